package node

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tablefsm/tablefsm/grpcapi"
)

// metricsServer serves the node's Prometheus metrics over HTTP at
// /metrics: the server's collector (every hosted shard's follower), the
// Go runtime's and the process's; and, when asked, the runtime's
// profiles at /debug/pprof/.
type metricsServer struct {
	url    string
	http   *http.Server
	served chan error
	// stopping ends the context of every request when the shutdown
	// begins: a CPU profile or a trace then stops and is sent as it is,
	// instead of holding the shutdown for the seconds it was asked for.
	stopping context.CancelFunc
}

// serveMetrics serves the metrics of srv, with the Go runtime's and the
// process's, on lis; with profiles, also the runtime's profiles at
// /debug/pprof/.
func serveMetrics(lis net.Listener, srv *grpcapi.Server, profiles bool) (*metricsServer, error) {
	reg := prometheus.NewRegistry()
	if err := errors.Join(
		reg.Register(srv.Collector()),
		reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
	); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	if profiles {
		// Index serves every named profile (heap, goroutine, block, ...)
		// under /debug/pprof/; the others are not runtime/pprof profiles.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	base, stopping := context.WithCancel(context.Background())
	m := &metricsServer{
		url: "http://" + lis.Addr().String() + "/metrics",
		http: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return base },
		},
		served:   make(chan error, 1),
		stopping: stopping,
	}
	go func() { m.served <- m.http.Serve(lis) }()
	return m, nil
}

// shutdown stops serving, waiting for scrapes in progress until ctx ends.
func (m *metricsServer) shutdown(ctx context.Context) error {
	m.stopping()
	err := m.http.Shutdown(ctx)
	if err != nil {
		_ = m.http.Close()
	}
	if serr := <-m.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
