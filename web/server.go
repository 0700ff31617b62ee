package web

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"
)

// ServerConfig configures the public http.Server. Fields are read once, by [NewServer].
type ServerConfig struct {
	// Handler serves every request. Required.
	Handler http.Handler
	// TLSConfig, when set, makes this an HTTPS server (HTTP/2 and HTTP/1.1). Default nil:
	// plain HTTP.
	TLSConfig *tls.Config
	// ReadHeaderTimeout bounds reading a request's headers, the defence against slowloris.
	// Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds how long a client connection waits for its next request. Default 2m.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers; past it the client gets 431. Default 64 KiB.
	MaxHeaderBytes int
	// Logger receives the server's internal errors (TLS handshake failures and the like) at
	// debug level. Default: discard.
	Logger *slog.Logger
}

// NewServer returns the public server. There is deliberately no ReadTimeout or WriteTimeout:
// either would cut long uploads, SSE streams and WebSockets, which must live as long as the
// two ends want. Header reads are bounded; bodies and responses are bounded by the peers.
func NewServer(cfg ServerConfig) *http.Server {
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 64 << 10
	}
	s := &http.Server{
		Handler:           cfg.Handler,
		TLSConfig:         cfg.TLSConfig,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
	}
	if cfg.Logger != nil {
		s.ErrorLog = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)
	}
	return s
}
