package opshttp

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/zmqmsg/zmqmsg/internal/testutil"
	"github.com/zmqmsg/zmqmsg/metrics"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Each endpoint serves its paths only, and Close leaves nothing running.
func TestEndpoints(t *testing.T) {
	ml, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := Metrics(ml, func() []metrics.Family {
		return []metrics.Family{{Name: "zmqmsg_x_total", Help: "x.", Kind: metrics.Counter, Samples: []metrics.Sample{{Value: 3}}}}
	})
	pl, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := Pprof(pl)
	if code, body := testutil.Get(t, "http://"+m.Addr().String()+"/metrics"); code != 200 || !strings.Contains(body, "zmqmsg_x_total 3\n") {
		t.Errorf("/metrics: %d %q", code, body)
	}
	if code, _ := testutil.Get(t, "http://"+m.Addr().String()+"/debug/pprof/"); code != 404 {
		t.Errorf("pprof on the metrics listener: %d", code)
	}
	if code, _ := testutil.Get(t, "http://"+p.Addr().String()+"/debug/pprof/"); code != 200 {
		t.Errorf("/debug/pprof/: %d", code)
	}
	if _, err := Listen(m.Addr().String()); err == nil {
		t.Error("a taken address: no error")
	}
	http.DefaultClient.CloseIdleConnections()
	for _, s := range []*Server{m, p} {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}
}

// Close with a request still running (a 30 s CPU profile) cuts it once
// its ctx ends, and returns.
func TestCloseCutsARunningRequest(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := Pprof(l)
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest(http.MethodGet, "http://"+p.Addr().String()+"/debug/pprof/profile?seconds=30", nil)
		close(started)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	<-done
	http.DefaultClient.CloseIdleConnections()
}

// Bind names the flag whose address is taken and leaves nothing bound;
// Close of endpoints never served frees their addresses.
func TestBind(t *testing.T) {
	taken, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	if _, err := Bind(addr, taken.Addr().String()); err == nil || !strings.Contains(err.Error(), "--pprof-addr") {
		t.Fatalf("Bind with a taken pprof address: %v", err)
	}
	e, err := Bind(addr, "")
	if err != nil {
		t.Fatalf("the metrics address was left bound: %v", err)
	}
	e.Close()
	e, err = Bind(addr, "")
	if err != nil {
		t.Fatalf("Close left it bound: %v", err)
	}
	e.Serve(func() []metrics.Family { return nil })
	if code, _ := testutil.Get(t, "http://"+e.Metrics.Addr().String()+"/metrics"); code != 200 {
		t.Errorf("/metrics: %d", code)
	}
	http.DefaultClient.CloseIdleConnections()
	e.Close()
}
