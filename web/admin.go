package web

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminConfig configures the admin listener's handler. Fields are read once, by [NewAdmin].
type AdminConfig struct {
	// Ready reports whether toolgate serves traffic yet; /readyz answers 503 until it does.
	// Default: always ready.
	Ready func() bool
	// Gatherer supplies /metrics. Default: no /metrics.
	Gatherer prometheus.Gatherer
}

// NewAdmin returns the handler for the admin listener: /healthz (the process is up), /readyz
// (it serves) and /metrics (Prometheus). It is meant for a loopback or internal address; it
// has no authentication of its own.
func NewAdmin(cfg AdminConfig) http.Handler {
	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	r.Get("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if cfg.Ready != nil && !cfg.Ready() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	if cfg.Gatherer != nil {
		r.Handle("/metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	return r
}
