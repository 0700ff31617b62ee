package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRun covers the command line around serve; none of these cases starts a server.
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stdout []string
		stderr []string
	}{
		{name: "version", args: []string{"version"}, code: 0, stdout: []string{"toolgate "}},
		{name: "help", args: []string{"help"}, code: 0, stdout: []string{"usage:", "toolgate version"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`, "usage:"}},
		{name: "serve --bogus", args: []string{"serve", "--bogus"}, code: 2, stderr: []string{"-bogus"}},
		{name: "flags without serve", args: []string{"--bogus"}, code: 2, stderr: []string{"-bogus"}},
		{name: "serve -h", args: []string{"serve", "-h"}, code: 0, stderr: []string{"-domain"}},
		{name: "-h alone", args: []string{"-h"}, code: 0, stderr: []string{"-domain"}},
		{name: "bad setting from env", args: []string{"serve"}, env: map[string]string{"TOOLGATE_LOG_FORMAT": "xml"},
			code: 2, stderr: []string{"toolgate: ", "setting log-format"}},
		{name: "bad config file", args: []string{"serve", "--config", "/nonexistent/toolgate.yaml"},
			code: 2, stderr: []string{"toolgate: config file"}},
		{name: "oidc secret from a missing variable", args: []string{"serve"},
			env:  map[string]string{"TOOLGATE_OIDC_ISSUER": "https://idp.example", "TOOLGATE_OIDC_CLIENT_ID": "tg", "TOOLGATE_OIDC_CLIENT_SECRET": "env:NOPE"},
			code: 2, stderr: []string{"toolgate: setting oidc-client-secret: environment variable NOPE is not set"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr, envOf(tc.env))
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout %q lacks %q", stdout.String(), w)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q lacks %q", stderr.String(), w)
				}
			}
		})
	}
}
