package main

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

// benchUnderLoad starts a bench server process on topic (extra are its
// flags), then a bench client process calling it for a minute, and returns
// both once the server has answered 200 calls.
func benchUnderLoad(t *testing.T, env map[string]string, topic string, clientArgs []string, extra ...string) (server, client *proc) {
	t.Helper()
	server = spawn(t, env, append([]string{"bench", "server", "--topic", topic, "--name", "s1"}, extra...)...)
	var ready struct{ Ready bool }
	if l := server.stdout.next(t); json.Unmarshal([]byte(l), &ready) != nil || !ready.Ready {
		t.Fatalf("bench server: %q", l)
	}
	client = spawn(t, env, append([]string{"bench", "client", "--topic", topic, "--pattern", "call", "--concurrency", "4",
		"--duration", "60s", "--timeout", "2s"}, clientArgs...)...)
	deadline := time.Now().Add(testTimeout)
	for {
		r := cliRun(t, env, "", "--json", "call", "--server", "s1", topic, "stats")
		if r.code == 0 && decode[benchStats](t, r.stdout).Calls >= 200 {
			return server, client
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bench client did not get going: %s %s", client.stdout.String(), client.stderr.String())
		}
	}
}

// bench client stopped early prints what it has, within a bounded time: on
// SIGINT (the calls in flight are neither errors nor surplus receipts),
// when its servers stop, and when their proxy daemon stops.
func TestBenchClientStops(t *testing.T) {
	srv := redistest.Start(t)
	env := map[string]string{"ZMQMSG_DIRECTORY": srv.URL() + "?prefix=" + t.Name()}

	t.Run("SIGINT", func(t *testing.T) {
		server, client := benchUnderLoad(t, env, "t-stop-int", []string{"--json"})
		client.signal(t, syscall.SIGINT)
		if code := client.wait(t, 15*time.Second); code != 0 {
			t.Fatalf("bench client after SIGINT: exit %d\n%s\n%s", code, client.stdout.String(), client.stderr.String())
		}
		r := decode[benchResult](t, client.stdout.next(t))
		if r.Stopped != "interrupted" || r.Sent == 0 || r.OK+r.Canceled != r.Sent || r.Errors != 0 || r.Extra != 0 ||
			r.Lost == nil || *r.Lost != 0 || r.Received != r.Expected || r.ElapsedS > 30 {
			t.Errorf("interrupted run: %+v", r)
		}
		server.signal(t, syscall.SIGTERM)
		if code := server.wait(t, testTimeout); code != 0 {
			t.Errorf("bench server exit %d", code)
		}
	})

	t.Run("servers stop", func(t *testing.T) {
		server, client := benchUnderLoad(t, env, "t-stop-srv", nil)
		server.signal(t, syscall.SIGTERM)
		t0 := time.Now()
		code := client.wait(t, 20*time.Second)
		out := client.stdout.String()
		if code != exitUndelivered || !strings.Contains(out, "stopped early: ") ||
			!strings.Contains(out, "lost is unknown") || time.Since(t0) > 15*time.Second {
			t.Errorf("servers stopped mid-run: exit %d after %v\nstdout:\n%s\nstderr:\n%s", code, time.Since(t0), out, client.stderr.String())
		}
		rows := strings.Split(out, "\n")
		if len(rows) < 3 || len(strings.Fields(rows[2])) < 6 || strings.Fields(rows[1])[0] != "sent" || strings.Fields(rows[2])[5] != "?" {
			t.Errorf("the lost column: %q", out)
		}
	})

	t.Run("daemon stops", func(t *testing.T) {
		ipc := t.TempDir()
		d, err := zmqmsg.StartProxy(zmqmsg.ProxyConfig{Dir: ipc, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		_, client := benchUnderLoad(t, env, "t-stop-daemon", []string{"--json"}, "--proxy-dir", ipc)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		code := client.wait(t, 30*time.Second)
		if code == 0 || time.Since(t0) > 20*time.Second {
			t.Errorf("daemon stopped mid-run: exit %d after %v\n%s", code, time.Since(t0), client.stderr.String())
		}
		r := decode[benchResult](t, client.stdout.next(t))
		if r.Stopped == "" || r.Sent == 0 || r.OK == 0 || r.Errors == 0 || r.Lost != nil || len(r.Unread) != 1 {
			t.Errorf("daemon stopped mid-run: %+v", r)
		}
	})
}
