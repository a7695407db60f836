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

// Metrics serves the families collect returns at /metrics on addr.
func Metrics(addr string, collect func() []metrics.Family) (*Server, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(collect))
	return start(addr, mux)
}

// Pprof serves net/http/pprof's handlers at /debug/pprof/ on addr.
func Pprof(addr string) (*Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return start(addr, mux)
}

func start(addr string, h http.Handler) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, addr: l.Addr(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(l) // ErrServerClosed after Close
	}()
	return s, nil
}

// Close stops the server, waiting (bounded by ctx) for requests in
// progress. A nil Server is fine.
func (s *Server) Close(ctx context.Context) error {
	if s == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	<-s.done
	return err
}
