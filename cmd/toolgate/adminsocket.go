package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/web"
)

// adminSocketName is the Unix socket a running server listens on in its data directory. Only
// the data directory's owner can reach it: the directory is 0700 and the socket 0600, and that
// owner could open the database file anyway, so the socket grants nothing new.
const adminSocketName = "admin.sock"

// adminRequest and adminResponse are the socket's one exchange: a command line in, its output
// and exit code out.
type adminRequest struct {
	Args []string `json:"args"`
}

type adminResponse struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Code   int    `json:"code"`
}

// listenAdminSocket listens on the admin socket in dir. The server holds the database lock, so
// a socket file left there is stale (a crash) and is removed.
func listenAdminSocket(dir string) (net.Listener, error) {
	path := filepath.Join(dir, adminSocketName)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return l, nil
}

// adminSocketHandler runs commands sent by `toolgate user|key|tunnel|policy …` inside the
// server (POST /run), and answers audit queries (GET /audit, auditquery.go).
func adminSocketHandler(env func() adminEnv) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/audit" {
			serveAuditQuery(w, r, env())
			return
		}
		if r.Method != http.MethodPost || r.URL.Path != "/run" {
			http.Error(w, "POST /run, or GET /audit", http.StatusNotFound)
			return
		}
		var req adminRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || len(req.Args) == 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var stdout, stderr bytes.Buffer
		code := runAdminCommand(r.Context(), env(), req.Args, &stdout, &stderr)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(adminResponse{Stdout: stdout.String(), Stderr: stderr.String(), Code: code})
	})
}

// runAdminCLI is `toolgate user …`, `toolgate key …` and the other admin commands: through the
// running server's socket if there is one, else directly on the database file.
func runAdminCLI(args []string, stdout, stderr io.Writer, env func(string) (string, bool)) int {
	// --config and --data-dir say where the database is; everything else is the command's.
	var where, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--config" || a == "-config" || a == "--data-dir" || a == "-data-dir":
			if i+1 >= len(args) {
				fmt.Fprintf(stderr, "toolgate: %s needs a value\n", a)
				return 2
			}
			where = append(where, a, args[i+1])
			i++
		case hasAnyPrefix(a, "--config=", "-config=", "--data-dir=", "-data-dir="):
			where = append(where, a)
		default:
			rest = append(rest, a)
		}
	}
	s, err := loadSettings(where, env, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "toolgate: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if rest, err = inlineKeyFile(rest); err != nil {
		fmt.Fprintf(stderr, "toolgate: %v\n", err)
		return 1
	}

	resp, err := callAdminSocket(ctx, filepath.Join(s.DataDir, adminSocketName), rest)
	if err == nil {
		io.WriteString(stdout, resp.Stdout)
		io.WriteString(stderr, resp.Stderr)
		return resp.Code
	}
	if !errors.Is(err, errNoServer) {
		fmt.Fprintf(stderr, "toolgate: %v\n", err)
		return 1
	}
	store, err := data.Open(data.Config{Path: filepath.Join(s.DataDir, dbFileName), LockTimeout: 2 * time.Second})
	if errors.Is(err, data.ErrLocked) {
		fmt.Fprintf(stderr, "toolgate: another process holds %s and its admin socket does not answer; is an older toolgate running?\n", s.DataDir)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "toolgate: %v\n", err)
		return 1
	}
	defer store.Close()
	accounts, err := web.NewAccounts(web.AccountsConfig{Store: store, BaseURL: publicBaseURL(s)})
	if err != nil {
		fmt.Fprintf(stderr, "toolgate: %v\n", err)
		return 1
	}
	// Security events of the command (a share, say) go to the audit log as they would in a
	// server; Close, deferred after the store's, commits them before the file is closed.
	audit := store.AuditLog(data.AuditLogConfig{})
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		if err := audit.Close(cctx); err != nil {
			fmt.Fprintf(stderr, "toolgate: writing the audit log: %v\n", err)
		}
	}()
	aenv := adminEnv{store: store, accounts: accounts, keyTTL: s.KeyTTL, reserved: s.ReservedNames, audit: audit}
	if s.TunnelAuth == "oauth" {
		// No server: the configured policy, and what the database knows.
		var pol *authz.Policy
		if s.Policy != "" {
			if pol, err = readPolicy(s.Policy); err != nil {
				fmt.Fprintf(stderr, "toolgate: %v\n", err)
				return 1
			}
		} else {
			pol = authz.DefaultPolicy(s.MaxAuthAge)
		}
		aenv.policies = &policyEnv{policy: func() *authz.Policy { return pol }, file: s.Policy}
	}
	return runAdminCommand(ctx, aenv, rest, stdout, stderr)
}

// inlineKeyFile replaces the file argument of `key add` with the file's text ("-": standard
// input), here in the caller's process: the command may run inside a server that cannot see
// the caller's files, or resolves relative paths from another directory. An argument that is
// already a key ("ssh-ed25519 AAAA…") stays as it is.
func inlineKeyFile(args []string) ([]string, error) {
	if len(args) < 3 || args[0] != "key" || args[1] != "add" {
		return args, nil
	}
	out := append([]string(nil), args...)
	for i := 2; i < len(out); i++ {
		a := out[i]
		switch {
		case a == "--user" || a == "-user" || a == "--ttl" || a == "-ttl":
			i++ // its value
			continue
		case strings.HasPrefix(a, "-") && a != "-", strings.ContainsAny(a, " \t"):
			continue // a flag, or key text
		}
		var b []byte
		var err error
		if a == "-" {
			b, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
		} else {
			b, err = os.ReadFile(a)
		}
		if err != nil {
			return nil, fmt.Errorf("key add: reading the public key: %w", err)
		}
		out[i] = strings.TrimSpace(string(b))
	}
	return out, nil
}

// errNoServer: nothing listens on the admin socket, so no server holds the database.
var errNoServer = errors.New("no server is running")

func callAdminSocket(ctx context.Context, path string, args []string) (adminResponse, error) {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(adminRequest{Args: args})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://toolgate/run", bytes.NewReader(body))
	res, err := client.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return adminResponse{}, errNoServer
		}
		return adminResponse{}, fmt.Errorf("admin socket %s: %w", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		return adminResponse{}, fmt.Errorf("admin socket %s: %s: %s", path, res.Status, bytes.TrimSpace(b))
	}
	var out adminResponse
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return adminResponse{}, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return out, nil
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if len(s) >= len(p) && s[:len(p)] == p {
			return true
		}
	}
	return false
}

// dbFileName is the database in the data directory.
const dbFileName = "toolgate.db"

// publicBaseURL is https://D as users reach it, from the settings alone (for commands run
// without a server, which has no listener to ask).
func publicBaseURL(s *settings) string {
	port := s.PublicHTTPSPort
	if port == 0 {
		_, port, _ = splitListen(s.HTTPSListen)
	}
	if port == 443 || port == 0 {
		return "https://" + s.Domain
	}
	return fmt.Sprintf("https://%s:%d", s.Domain, port)
}
