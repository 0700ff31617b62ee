// Command toolgate puts local MCP servers on the internet through `ssh -R`, behind one HTTPS
// front with authorization and an audit log.
//
// Usage:
//
//	toolgate [serve] [flags]    run the server (no arguments: the development default)
//	toolgate version            print the version
//
// Every serve flag can also be set as TOOLGATE_<FLAG> in the environment or as a key of the
// YAML file given with --config; `toolgate serve -h` lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv))
}

// run is main without the process: arguments, outputs and environment are passed in, and the
// exit code comes back. 2 means the command line or configuration was wrong.
func run(args []string, stdout, stderr io.Writer, env func(string) (string, bool)) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(args, stdout, stderr, env)
	case "user", "key", "grant", "token", "tunnel", "policy", "audit":
		return runAdminCLI(append([]string{cmd}, args...), stdout, stderr, env)
	case "version":
		fmt.Fprintln(stdout, "toolgate", version())
		return 0
	case "help":
		fmt.Fprintln(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "toolgate: unknown command %q\n\n%s\n", cmd, usage)
	return 2
}

const usage = `usage:
  toolgate [serve] [flags]   run the server; with no configuration, the development default
  toolgate user|key|grant|token|tunnel|policy ...  accounts, SSH keys, OAuth approvals, tokens,
                             tunnel names and shares, policy (toolgate user help)
  toolgate audit list [flags]  the audit log, filtered (toolgate audit help)
  toolgate version           print the version
  toolgate serve -h          list the settings (flags, TOOLGATE_* variables, config file keys)`

// The garbage collector's target when GOGC is not set: a gcTuner keeps it between Go's default
// and gcMaxPercent, letting at most gcHeadroom bytes of garbage pile up between collections.
// x/crypto/ssh allocates every SSH packet it receives afresh, 32 KiB and more for bulk data, so
// a tunnel moving 300 MB/s allocates 300 MB/s, and at Go's default a proxy's small heap is
// collected every few milliseconds. Measured (docs/PERFORMANCE.md): bulk through a tunnel +21%
// and CPU per MB −19% at 200 against 100, and another +7% and −6% at 400 against 200. A fixed
// 200 made a server with 1,000 idle tunnels keep up to twice their 60 MB as uncollected
// garbage; with the headroom cap the tuner falls back to 100 there, and a small heap gets 400
// for at most 32 MiB of garbage. Set GOGC (and GOMEMLIMIT) to choose otherwise.
const (
	gcMaxPercent = 400
	gcHeadroom   = 32 << 20
)

func runServe(args []string, stdout, stderr io.Writer, env func(string) (string, bool)) int {
	s, err := loadSettings(args, env, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "toolgate: %v\n", err)
		return 2
	}
	log := newLogger(s, stderr)
	if v, _ := env("GOGC"); v == "" {
		t := newGCTuner(100, gcMaxPercent, gcHeadroom)
		t.start()
		defer t.stop()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, s, stdout, log); err != nil {
		log.Error("toolgate stopped", "err", err)
		fmt.Fprintf(stderr, "toolgate: %v\n", err)
		return 1
	}
	return 0
}

func newLogger(s *settings, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(s.LogLevel)) // validated already
	opts := &slog.HandlerOptions{Level: level}
	if s.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
