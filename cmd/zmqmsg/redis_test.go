package main

import (
	"strings"
	"testing"

	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

// The CLI against a real Redis directory: a bench server, a call, the
// listing, a notification to a listener and a short bench run. Skipped only
// when redis-server is not installed.
func TestRedis(t *testing.T) {
	srv := redistest.Start(t)
	env := map[string]string{"ZMQMSG_DIRECTORY": srv.URL() + "?prefix=" + t.Name()}
	run := func(args ...string) result {
		t.Helper()
		return cliRun(t, env, "", args...)
	}

	b := start(t, env, "bench", "server", "--topic", "t-redis", "--name", "r1")
	if ready := decode[map[string]any](t, b.stdout.next(t)); ready["ready"] != true || ready["server"] != "r1" {
		t.Fatalf("readiness %v", ready)
	}
	l := start(t, env, "listen", "--pool", "ops", "--count", "1", "t-redis-n")
	if s := l.stderr.next(t); !strings.Contains(s, "listening") {
		t.Fatalf("stderr %q", s)
	}

	if r := run("--json", "call", "t-redis", "echo", `{"via": "redis"}`).want(t, 0); r.stdout != `{"via":"redis"}`+"\n" {
		t.Errorf("call: %q", r.stdout)
	}
	lines := decode[[]serverLine](t, run("--json", "servers").want(t, 0).stdout)
	var names []string
	for _, e := range lines {
		names = append(names, e.Exchange+"/"+e.Topic+"/"+e.Server)
		if e.ExpiresIn <= 0 || e.Endpoints["call"] == "" {
			t.Errorf("entry %+v", e)
		}
	}
	if len(lines) != 3 || lines[0].Server != "r1" || !strings.HasPrefix(lines[1].Server, "bench/") || !strings.HasPrefix(lines[2].Server, "ops/") {
		t.Errorf("servers: %v", names)
	}

	run("notify", "t-redis-n", "disk.full", `{"pct": 99}`).want(t, 0)
	if code := l.wait(t); code != 0 {
		t.Fatalf("listen exit %d", code)
	}
	if n := decode[notificationLine](t, l.stdout.next(t)); n.EventType != "disk.full" || string(n.Payload) != `{"pct":99}` {
		t.Errorf("notification %+v", n)
	}

	res := decode[benchResult](t, run("bench", "client", "--json", "--topic", "t-redis", "--pattern", "cast", "--count", "100", "--concurrency", "4").want(t, 0).stdout)
	if res.OK != 100 || res.Received != 100 || res.Lost != 0 {
		t.Errorf("bench: %+v", res)
	}

	// Stopped, the bench server deregisters at once.
	if code := b.stop(t); code != 0 {
		t.Fatalf("bench server exit %d", code)
	}
	if got := decode[[]serverLine](t, run("--json", "servers", "t-redis").want(t, 0).stdout); len(got) != 0 {
		t.Errorf("after stop: %+v", got)
	}
	// A Redis that is down: the call fails, bounded by --timeout.
	srv.Stop()
	r := run("call", "--timeout", "2s", "--log-level", "error", "t-redis", "echo")
	if r.code != exitUndelivered || !strings.Contains(r.stderr, "the directory failed") {
		t.Errorf("call with Redis down: exit %d, %q", r.code, r.stderr)
	}
}
