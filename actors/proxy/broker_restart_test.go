package proxy_test

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// A broker loop restart (here: a panic in Node during a hello) keeps the
// broker draining, and gives the IPC socket file it binds again the
// daemon's mode (not the umask's).
func TestBrokerRestartKeepsDrainAndSocketMode(t *testing.T) {
	zctx := testutil.ZMQ(t)
	sys := testutil.ActorSystem(t)
	dir := t.TempDir()
	sockPath := filepath.Join(dir, "call")
	var panics atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := proxy.StartBroker(ctx, sys.Root, "daemon-call", proxy.BrokerConfig{
		ZMQ: zctx, Bind: "tcp://127.0.0.1:*", Backend: "ipc://" + sockPath,
		SocketMode: 0o770,
		Node: func() directory.Node {
			if panics.Add(1) == 1 {
				panic("boom")
			}
			return directory.Node{Host: "127.0.0.1", CallPort: 1}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	if err := b.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	// Restart the loop: a member's hello makes Node panic.
	m := newClient(t, zctx, "ipc://"+sockPath)
	hello, _ := envelope.Encode(&envelope.Message{Kind: envelope.KindAttach, ID: envelope.NewID()})
	m.send(hello)
	testutil.WaitFor(t, 5*time.Second, "broker restart", func() bool { return b.Restarts() == 1 })
	// A connection made while the old loop's listener was being torn down
	// can lose its first message: ask again until the new loop answers.
	c := newClient(t, zctx, b.Endpoint())
	var fr [][]byte
	for attempt := 0; attempt < 10 && fr == nil; attempt++ {
		call, _ := envelope.Encode(&envelope.Message{Kind: envelope.KindCall, ID: envelope.NewID(), Topic: "svc"})
		c.send(call)
		fr = c.recv(500 * time.Millisecond)
	}
	if fr == nil {
		t.Fatal("no answer")
	}
	var got envelope.Message
	if err := envelope.DecodeInto(&got, fr[len(fr)-1]); err != nil {
		t.Fatal(err)
	}
	if got.Code != envelope.CodeShuttingDown {
		t.Errorf("a call after Drain + loop restart got %s, want SHUTTING_DOWN (the broker forgot it is draining)", got.Code)
	}
	// The call was answered: the new loop has bound its sockets.

	st, err := os.Stat(sockPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o770 {
		t.Errorf("IPC socket mode after a broker restart = %#o, want 0770", st.Mode().Perm())
	}
}
