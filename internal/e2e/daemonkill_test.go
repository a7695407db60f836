package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

// A node proxy daemon killed with SIGKILL and started again on the same
// ports and IPC directory: its service processes attach to the new daemon
// by themselves (same processes, never restarted), and a client that kept
// calling resumes without being restarted. The calls that met the outage
// fail with an error within their deadline; none hangs.
func TestDaemonKilledAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes; skipped with -short")
	}
	cli, daemon := build(t)
	rds := redistest.Start(t)
	ipc := filepath.Join(t.TempDir(), "zmqmsg")
	const topic = "phoenix"
	startDaemon := func(ports ...string) (*proc, map[string]any) {
		args := []string{"--host", "127.0.0.1", "--ipc-dir", ipc, "--log-format", "json", "--stats-interval", "0"}
		args = append(args, ports...)
		d := spawn(t, "zmqmsg-proxy", daemon, args...)
		var node map[string]any
		if err := json.Unmarshal([]byte(d.waitLine(t, `"msg":"node proxy serving"`, 20*time.Second)), &node); err != nil {
			t.Fatal(err)
		}
		return d, node
	}
	d, node := startDaemon("--call-port", "0", "--fanout-port", "0", "--notify-port", "0", "--cast-port", "0")
	members := map[string]*proc{}
	for _, name := range []string{"m1", "m2"} {
		members[name] = spawn(t, name, cli, "--directory", rds.URL(), "bench", "server", "--topic", topic, "--name", name,
			"--proxy-dir", ipc, "--ttl", "3s")
		members[name].waitLine(t, `"ready":true`, 30*time.Second)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := libClient(t, ctx, rds.URL()).Client(zmqmsg.Target{Topic: topic})

	var ok, failed, slow atomic.Int64
	var firstErr atomic.Value
	var lastOK atomic.Int64 // unix ns of the last answered call
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const deadline = 3 * time.Second
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, ccancel := context.WithTimeout(ctx, deadline)
				t0 := time.Now()
				err := c.Call(cctx, "echo", []byte("x"), nil)
				ccancel()
				if time.Since(t0) > deadline+time.Second {
					slow.Add(1)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
				lastOK.Store(time.Now().UnixNano())
			}
		}()
	}
	waitUntil(t, "calls through the daemon", 10*time.Second, func() bool { return ok.Load() > 200 })

	d.stop(t, syscall.SIGKILL)
	killed := time.Now()
	okAtKill := ok.Load()
	port := func(k string) string { return strconv.Itoa(int(node[k].(float64))) }
	d2, _ := startDaemon("--call-port", port("call"), "--fanout-port", port("fanout"), "--notify-port", port("notify"), "--cast-port", port("cast"))
	restarted := time.Now()
	waitUntil(t, "calls to resume through the new daemon", 30*time.Second, func() bool { return ok.Load() > okAtKill+200 })
	resumed := time.Since(restarted)
	close(stop)
	wg.Wait()

	for name, m := range members {
		select {
		case <-m.done:
			t.Fatalf("member %s exited when its daemon was killed:\n%s", name, m.output())
		default:
		}
	}
	if slow.Load() != 0 {
		t.Fatalf("%d calls outlived their %v deadline by more than a second", slow.Load(), deadline)
	}
	t.Logf("daemon SIGKILLed, restarted %v later; calls resumed %v after the restart (%d answered, %d failed with an error during the outage (first: %v), none hung)",
		restarted.Sub(killed).Round(time.Millisecond), resumed.Round(time.Millisecond), ok.Load(), failed.Load(), firstErr.Load())
	for _, name := range []string{"m1", "m2"} {
		if code := members[name].stop(t, syscall.SIGTERM); code != 0 {
			t.Errorf("%s exit %d:\n%s", name, code, members[name].output())
		}
	}
	if code := d2.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("daemon exit %d:\n%s", code, d2.output())
	}
}
