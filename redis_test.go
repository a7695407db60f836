package zmqmsg

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/redistest"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// Rows 24 and 25 of ACCEPTANCE.md with whole Transports on a real
// redis-server: each Transport has its own directory.Redis, as separate
// processes would.

func redisDir(t *testing.T, url string) *directory.Redis {
	t.Helper()
	opts, err := directory.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opts.OpTimeout = 300 * time.Millisecond
	opts.PollInterval = time.Second
	opts.Logger = testLogger(t)
	d, err := directory.NewRedis(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// testLogger sends a component's logs to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func lookupNames(t *testing.T, d directory.Directory, k directory.Key) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	es, err := d.Lookup(ctx, k)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Server)
	}
	return names
}

// Row 24, the clean half (the killed half is the multi-process test, whose
// server dies by SIGKILL): a stopped server disappears from another node's
// lookups at once, and a node that stops refreshing disappears after its TTL.
func TestRedisRegistrationStopAndExpiry(t *testing.T) {
	srv := redistest.Start(t)
	observer := redisDir(t, srv.URL())
	key := directory.Key{Topic: "svc"}
	const ttl = 2 * time.Second
	nodeDir := redisDir(t, srv.URL())
	node := newNode(t, nodeDir, func(c *Config) { c.RegistrationTTL = ttl })
	s := serve(t, node, Target{Topic: "svc", Server: "a"}, Endpoints{"x": func(context.Context, Args) (any, error) { return nil, nil }})
	serve(t, node, Target{Topic: "svc", Server: "b"}, Endpoints{"x": func(context.Context, Args) (any, error) { return nil, nil }})
	if got := lookupNames(t, observer, key); len(got) != 2 {
		t.Fatalf("after Serve: %v", got)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// "At once": the observer's cache learns of it by the change
	// notification, within a millisecond on loopback.
	stopped := time.Now()
	testutil.WaitFor(t, time.Second, "the stopped server to vanish", func() bool {
		got := lookupNames(t, observer, key)
		return len(got) == 1 && got[0] == "b"
	})
	t.Logf("a stopped server vanished from another node's lookups %v after Stop returned", time.Since(stopped).Round(time.Microsecond))
	// Refreshes (every TTL/3) keep b alive well past its TTL...
	deadline := time.Now().Add(ttl + ttl/2)
	testutil.WaitFor(t, 5*time.Second, "three TTLs to pass", func() bool { return time.Now().After(deadline) })
	if got := lookupNames(t, observer, key); len(got) != 1 {
		t.Fatalf("b not kept alive by its refreshes: %v", got)
	}
	// ...and when its node stops refreshing without deregistering (a
	// crash), b vanishes after its TTL. The node's directory client is
	// closed first, so that its deregistration is lost, as in a crash.
	_ = nodeDir.Close()
	_ = node.Close()
	start := time.Now()
	if got := lookupNames(t, observer, key); len(got) != 1 {
		t.Fatalf("b gone before its TTL (was the deregistration not lost?): %v", got)
	}
	testutil.WaitFor(t, 2*ttl, "b to expire", func() bool { return len(lookupNames(t, observer, key)) == 0 })
	t.Logf("a registration whose node stopped refreshing vanished %v after the node closed (TTL %v)", time.Since(start).Round(time.Millisecond), ttl)
}

// Row 25: with Redis stopped, calls and casts to known servers keep working
// from the cache; registrations resume when Redis returns.
func TestRedisOutageKeepsKnownServersWorking(t *testing.T) {
	srv := redistest.Start(t)
	server := newNode(t, redisDir(t, srv.URL()), func(c *Config) { c.RegistrationTTL = 900 * time.Millisecond })
	var calls, casts atomic.Int64
	var hits sync.Map
	eps := whoAmI("a", &hits)
	eps["cast"] = func(context.Context, Args) (any, error) { casts.Add(1); return nil, nil }
	serve(t, server, Target{Topic: "svc", Server: "a"}, eps)
	client := newNode(t, redisDir(t, srv.URL()))
	c := client.Client(Target{Topic: "svc"})
	ctx := testCtx(t, 30*time.Second)
	call := func(i int) error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var got echoed
		if err := c.Call(cctx, "who", i, &got); err != nil {
			return err
		}
		calls.Add(1)
		if got.Seq != i {
			return errors.New("wrong reply")
		}
		return c.Cast(cctx, "cast", i)
	}
	for i := 0; i < 10; i++ {
		if err := call(i); err != nil {
			t.Fatalf("before the outage: %v", err)
		}
	}
	srv.Stop()
	// Calls and casts go on from the cache, across several refresh periods
	// of the server (whose refreshes now fail) and past its TTL.
	end := time.Now().Add(2 * time.Second)
	n := 0
	for i := 10; time.Now().Before(end) || n < 50; i++ {
		if err := call(i); err != nil {
			t.Fatalf("call %d during the outage: %v", i, err)
		}
		n++
	}
	if st := server.Stats(); st.RegistrationErrors == 0 {
		t.Fatalf("no failed refresh counted during the outage: %+v", st)
	}
	t.Logf("%d calls and casts during the outage, all answered; %d failed refreshes counted", n, server.Stats().RegistrationErrors)
	// Redis returns empty (no persistence): the registrar registers the
	// server again, and a node that never saw it finds it.
	srv.Restart()
	fresh := newNode(t, redisDir(t, srv.URL()), func(c *Config) { c.WaitForServers = 5 * time.Second })
	var got echoed
	if err := fresh.Client(Target{Topic: "svc"}).Call(ctx, "who", 7, &got); err != nil || got.Server != "a" {
		t.Fatalf("a new client after Redis returned: %+v, %v", got, err)
	}
	testutil.WaitFor(t, 5*time.Second, "the casts to run", func() bool { return casts.Load() == calls.Load() })
}
