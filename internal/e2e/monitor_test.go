package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

// Issue 13, item 5: a long call whose server process is frozen (SIGSTOP:
// its connection stays up, no RST, the node's own heartbeat takes 6 s) or
// SIGKILLed mid-call fails fast when the caller asked for heartbeats
// (MonitorEvery), embedded and behind a node proxy daemon, long before the
// call's 20 s deadline. Frozen, the cause is ErrServerLost; killed, the
// first of ErrServerLost and the node's own loss detection (ErrNodeDown).
func TestMonitoredCallServerFrozenOrKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes; skipped with -short")
	}
	cli, daemon := build(t)
	rds := redistest.Start(t)
	tmp := t.TempDir()
	ipc := filepath.Join(tmp, "zmqmsg")
	d := spawn(t, "zmqmsg-proxy", daemon, "--host", "127.0.0.1", "--ipc-dir", ipc, "--log-format", "json", "--stats-interval", "0",
		"--call-port", "0", "--fanout-port", "0", "--notify-port", "0", "--cast-port", "0")
	d.waitLine(t, `"msg":"node proxy serving"`, 20*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	tr := libClient(t, ctx, rds.URL())

	for _, c := range []struct {
		name   string
		member bool // behind the daemon
		sig    syscall.Signal
	}{
		{"embedded-frozen", false, syscall.SIGSTOP},
		{"embedded-killed", false, syscall.SIGKILL},
		{"daemon-frozen", true, syscall.SIGSTOP},
		{"daemon-killed", true, syscall.SIGKILL},
	} {
		t.Run(c.name, func(t *testing.T) {
			started := filepath.Join(tmp, c.name+".started")
			args := []string{"--directory", rds.URL(), "reply", c.name, "work", "--server", c.name,
				"--command", "touch " + started + "; exec sleep 20"}
			if c.member {
				args = append(args, "--proxy-dir", ipc)
			}
			srv := spawn(t, c.name, cli, args...)
			srv.waitLine(t, "serving", 30*time.Second)

			client := tr.Client(zmqmsg.Target{Topic: c.name}, zmqmsg.MonitorEvery(100*time.Millisecond))
			cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
			defer ccancel()
			done := make(chan error, 1)
			go func() { done <- client.Call(cctx, "work", nil, nil) }()
			waitUntil(t, "the handler to start", 20*time.Second, func() bool { _, err := os.Stat(started); return err == nil })
			before := tr.Stats().ServersLost
			if err := srv.cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			err := <-done
			if cctx.Err() != nil {
				t.Fatalf("the call ended only at its deadline: %v", err)
			}
			switch {
			case c.sig == syscall.SIGSTOP && !errors.Is(err, zmqmsg.ErrServerLost):
				t.Fatalf("frozen server: %v, want ErrServerLost", err)
			case !errors.Is(err, zmqmsg.ErrServerLost) && !errors.Is(err, zmqmsg.ErrNodeDown):
				t.Fatalf("killed server: %v, want ErrServerLost or ErrNodeDown", err)
			}
			if errors.Is(err, zmqmsg.ErrServerLost) && tr.Stats().ServersLost != before+1 {
				t.Errorf("ServersLost %d, want %d", tr.Stats().ServersLost, before+1)
			}
			t.Logf("%s: %v", c.name, err)
			_ = srv.cmd.Process.Kill()
			<-srv.done
		})
	}
}
