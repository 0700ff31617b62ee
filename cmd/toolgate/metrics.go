package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/toolgate/toolgate/sshd"
	"github.com/toolgate/toolgate/tunnel"
)

// newMetrics builds the registry behind /metrics: Go runtime and process metrics (goroutines and
// resident memory among them, which the scale figures read) and toolgate's gauges.
func newMetrics(reg *tunnel.Registry, ssh *sshd.Server) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "toolgate_tunnels",
			Help: "Live tunnels.",
		}, func() float64 { return float64(reg.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "toolgate_ssh_connections",
			Help: "Authenticated SSH connections.",
		}, func() float64 { return float64(ssh.Conns()) }),
	)
	return r
}
