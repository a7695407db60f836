// Package opshttp serves the commands' operator endpoints: /metrics
// (--metrics-addr) and /debug/pprof/ (--pprof-addr), each on its own
// listener so that profiling is never exposed by turning metrics on.
package opshttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/zmqmsg/zmqmsg/metrics"
)

// Server is one running endpoint.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

// Addr is the address it listens on (the port chosen for ":0").
func (s *Server) Addr() net.Addr { return s.addr }

// Listen binds addr: a command binds its endpoints before it starts
// serving messages, so that a taken address stops it before anything else.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return l, nil
}

// Metrics serves the families collect returns at /metrics on l.
func Metrics(l net.Listener, collect func() []metrics.Family) *Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(collect))
	return serve(l, mux)
}

// Pprof serves net/http/pprof's handlers at /debug/pprof/ on l.
func Pprof(l net.Listener) *Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return serve(l, mux)
}

func serve(l net.Listener, h http.Handler) *Server {
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}, addr: l.Addr(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(l) // ErrServerClosed after Close
	}()
	return s
}

// Close stops the server, waiting (bounded by ctx) for requests in
// progress. A nil Server is fine.
func (s *Server) Close(ctx context.Context) error {
	if s == nil {
		return nil
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		// ctx ended with requests still running (a profile, a trace):
		// cut their connections.
		_ = s.srv.Close()
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			<-s.done
			return err
		}
	}
	<-s.done
	return nil
}

// Endpoints are a command's --metrics-addr and --pprof-addr: bound first
// (Bind), served once what they report exists (Serve), closed last.
type Endpoints struct {
	ml, pl         net.Listener
	Metrics, Pprof *Server // nil until Serve, or when not asked for
}

// Bind binds the addresses given (an empty one is not asked for); an error
// names its flag.
func Bind(metricsAddr, pprofAddr string) (*Endpoints, error) {
	e := &Endpoints{}
	var err error
	if metricsAddr != "" {
		if e.ml, err = Listen(metricsAddr); err != nil {
			return nil, fmt.Errorf("--metrics-addr: %w", err)
		}
	}
	if pprofAddr != "" {
		if e.pl, err = Listen(pprofAddr); err != nil {
			e.Close()
			return nil, fmt.Errorf("--pprof-addr: %w", err)
		}
	}
	return e, nil
}

// Serve starts serving /metrics (what collect returns) and /debug/pprof/
// on the addresses bound.
func (e *Endpoints) Serve(collect func() []metrics.Family) {
	if e.ml != nil {
		e.Metrics = Metrics(e.ml, collect)
	}
	if e.pl != nil {
		e.Pprof = Pprof(e.pl)
	}
}

// Close stops what serves (waiting up to 5 s for requests in progress) and
// closes what was bound but never served.
func (e *Endpoints) Close() {
	for _, p := range []struct {
		l net.Listener
		s *Server
	}{{e.ml, e.Metrics}, {e.pl, e.Pprof}} {
		switch {
		case p.s != nil:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = p.s.Close(ctx)
			cancel()
		case p.l != nil:
			_ = p.l.Close()
		}
	}
}
