package main

import (
	"net"
	"strings"
	"testing"
	"time"

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
	if res.OK != 100 || res.Received != 100 || res.Lost == nil || *res.Lost != 0 {
		t.Errorf("bench: %+v", res)
	}

	// Stopped, the bench server deregisters at once.
	if code := b.stop(t); code != 0 {
		t.Fatalf("bench server exit %d", code)
	}
	if got := decode[[]serverLine](t, run("--json", "servers", "t-redis").want(t, 0).stdout); len(got) != 0 {
		t.Errorf("after stop: %+v", got)
	}
	// A Redis that is down: the directory is unavailable (exit 6), at once.
	srv.Stop()
	r := run("call", "--timeout", "2s", "t-redis", "echo")
	if r.code != exitDirectory || !strings.Contains(r.stderr, "unavailable") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("call with Redis down: exit %d, %q", r.code, r.stderr)
	}
}

// A directory that cannot be reached (a closed port) or read (a database
// index Redis does not have) fails every command with exit 6, type
// directory_unavailable, in one line on stderr and well before the 2 s a
// call waits for servers.
func TestDirectoryUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "redis://" + l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	badDB := redistest.Start(t).URL() + "/99"
	for _, url := range []string{closed, badDB} {
		for _, args := range [][]string{
			{"call", "t", "m"}, {"cast", "t", "m", "1"}, {"fanout", "t", "m"}, {"notify", "t", "e"}, {"servers"},
			{"listen", "t"}, {"bench", "server"}, {"bench", "client"},
		} {
			t0 := time.Now()
			r := cliRun(t, nil, "", append([]string{"--directory", url}, args...)...)
			if d := time.Since(t0); r.code != exitDirectory || strings.Count(r.stderr, "\n") != 1 ||
				!strings.Contains(r.stderr, "directory "+url+" unavailable") || d > 2*time.Second {
				t.Errorf("%s %v: exit %d after %v, stderr %q; want exit 6 at once, in one line", url, args, r.code, d, r.stderr)
			}
		}
		for _, args := range [][]string{{"call", "t", "m"}, {"servers"}} {
			r := cliRun(t, nil, "", append([]string{"--json", "--directory", url}, args...)...).want(t, exitDirectory)
			if e := decode[map[string]any](t, r.stderr); e["type"] != "directory_unavailable" || e["exit"] != float64(exitDirectory) {
				t.Errorf("%s %v: JSON error %v", url, args, e)
			}
		}
	}
	// The password and query of the URL stay out of the message.
	r := cliRun(t, nil, "", "servers", "--directory", "redis://u:secret@"+strings.TrimPrefix(closed, "redis://")+"?sentinel_password=s2").want(t, exitDirectory)
	if strings.Contains(r.stderr, "secret") || strings.Contains(r.stderr, "s2") {
		t.Errorf("credentials in %q", r.stderr)
	}
}
