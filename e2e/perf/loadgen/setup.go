package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"time"
)

// ---------------------------------------------------------------------------------------------
// wait: until a POST to the URL answers 200 (or -status). With tunnel-auth oauth and no token,
// 401 is the sign that the tunnel is up: toolgate answers 404 or 502 for one that is not.

func runWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	rawURL := fs.String("url", "", "URL to POST to")
	caFile := fs.String("ca", "", "PEM CA for https")
	token := fs.String("token", "", "OAuth access token to send (Authorization: Bearer)")
	want := fs.Int("status", http.StatusOK, "the status to wait for")
	timeout := fs.Duration("timeout", 15*time.Second, "give up after")
	fs.Parse(args)
	client, err := pollClient(*rawURL, *caFile)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(*timeout)
	for {
		code, err := post(client, *rawURL, *token)
		if code == *want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %d within %s (last: %d %v)", *rawURL, *want, *timeout, code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------------------------
// setup: time from starting the ssh client to the tunnel answering a POST with 200.

func runSetup(args []string) error {
	fs := flag.NewFlagSet("setup", flag.ExitOnError)
	path := fs.String("path", "c", "path name for the record")
	rawURL := fs.String("url", "", "URL to poll (POST) until it answers 200")
	caFile := fs.String("ca", "", "PEM CA for https")
	round := fs.Int("round", 1, "round number")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after")
	out := fs.String("out", "-", "JSONL results file (append)")
	fs.Parse(args)
	if fs.NArg() == 0 || *rawURL == "" {
		return errors.New("usage: loadgen setup -url URL [flags] -- CMD ARGS")
	}
	client, err := pollClient(*rawURL, *caFile)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	rec, err := openRecorder(*out)
	if err != nil {
		return err
	}
	// The tunnel must be down before we start (a previous round's may still be closing), and a
	// connection to toolgate is opened now so that its TLS handshake is not counted.
	deadline := time.Now().Add(*timeout)
	for {
		code, _ := post(client, *rawURL, "")
		if code != 200 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the tunnel is already up before ssh started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	var outBuf lockedBuffer
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	s := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer stopCmd(cmd)
	polls := 0
	for {
		polls++
		code, _ := post(client, *rawURL, "")
		if code == 200 {
			break
		}
		if time.Since(s) > *timeout {
			return fmt.Errorf("no 200 within %s (last status %d); ssh output:\n%s", *timeout, code, outBuf.String())
		}
		time.Sleep(500 * time.Microsecond)
	}
	el := time.Since(s)
	fmt.Fprintf(os.Stderr, "round %d  %s  setup %7.1f ms (%d polls)\n", *round, *path, ms(el), polls)
	rec.add(record{Round: *round, Path: *path, Metric: "setup_ms", Value: ms(el)})
	stopCmd(cmd)
	// Wait for the tunnel to go away so that the next round starts from nothing.
	for time.Since(s) < *timeout+10*time.Second {
		if code, _ := post(client, *rawURL, ""); code != 200 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("the tunnel stayed up after ssh exited")
}

// pollClient is the client wait and setup poll rawURL with: the load generator's transport
// (trusting the PEM CA in caFile, if any), 5 s per request.
func pollClient(rawURL, caFile string) (*http.Client, error) {
	t, err := parseTarget("x=" + rawURL)
	if err != nil {
		return nil, err
	}
	roots, err := loadRoots(caFile)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: newTransport(t, roots, nil), Timeout: 5 * time.Second}, nil
}
