package main

// The server's own credentials: its TLS certificates (a local development CA for .localhost
// domains, ACME otherwise) and its SSH host key, both kept in the database.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/tunnel"
	"github.com/toolgate/toolgate/web"
)

// newCerts sets up certificates: a local CA for .localhost domains, ACME otherwise.
func (srv *server) newCerts(ctx context.Context) error {
	s := srv.s
	cfg := web.CertManagerConfig{
		Domain:  s.Domain,
		Storage: srv.store.CertStorage(),
		Allow:   srv.allowCert,
		Logger:  srv.log,
	}
	if s.useACME() {
		acme := &web.ACMEConfig{
			CA:                   s.acmeCA(),
			Email:                s.ACMEEmail,
			AltTLSALPNPort:       srv.httpsL.Addr().(*net.TCPAddr).Port,
			DisableHTTPChallenge: srv.httpL == nil,
		}
		if host, _, _ := net.SplitHostPort(s.HTTPSListen); host != "" {
			acme.ListenHost = host
		}
		if srv.httpL != nil {
			acme.AltHTTPPort = srv.httpL.Addr().(*net.TCPAddr).Port
		}
		if s.ACMECARoots != "" {
			pem, err := os.ReadFile(s.ACMECARoots)
			if err != nil {
				return fmt.Errorf("setting acme-ca-roots: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("setting acme-ca-roots: %s holds no PEM certificate", s.ACMECARoots)
			}
			acme.TrustedRoots = pool
		}
		cfg.ACME = acme
	} else {
		domains := []string{s.Domain}
		if s.TunnelDomain != s.Domain {
			domains = append(domains, s.TunnelDomain)
		}
		ca, err := web.NewLocalCA(ctx, web.LocalCAConfig{Secrets: srv.store, Domains: domains})
		if err != nil {
			return err
		}
		srv.caPath = filepath.Join(s.DataDir, "ca.pem")
		if err := writeFileAtomic(srv.caPath, ca.RootPEM(), 0o644); err != nil {
			return fmt.Errorf("writing the development CA certificate: %w", err)
		}
		if abs, err := filepath.Abs(srv.caPath); err == nil {
			srv.caPath = abs
		}
		cfg.LocalCA = ca
		cfg.Wildcard = "*." + s.TunnelDomain
	}
	var err error
	srv.certs, err = web.NewCertManager(cfg)
	return err
}

// allowCert is the on-demand TLS decision: certificates only for live or claimed tunnel names,
// so nobody can make toolgate request certificates for arbitrary names.
func (srv *server) allowCert(ctx context.Context, name string) error {
	label, ok := tunnel.NameFromHost(name, srv.s.TunnelDomain)
	if !ok {
		return fmt.Errorf("%s is not a tunnel name", name)
	}
	if !srv.reg.Known(ctx, label) {
		return fmt.Errorf("no tunnel named %s", label)
	}
	return nil
}

// loadHostKey returns the persistent ed25519 host key, creating it on first start.
func loadHostKey(ctx context.Context, store *data.Store) (ssh.Signer, error) {
	b, err := store.LoadOrCreateSecret(ctx, "ssh-host-key", func() ([]byte, error) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		blk, err := ssh.MarshalPrivateKey(priv, "toolgate host key")
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(blk), nil
	})
	if err != nil {
		return nil, fmt.Errorf("ssh host key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("ssh host key: %w", err)
	}
	return signer, nil
}

// writeFileAtomic writes via a temporary file and rename, so a reader never sees half a file.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
