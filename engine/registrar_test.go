package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// flakyDir is a Memory directory whose Register can be made to fail, as a
// Redis outage would, and which counts Register calls per server.
type flakyDir struct {
	*directory.Memory
	down  atomic.Bool
	mu    sync.Mutex
	calls map[string]int
}

var errDown = errors.New("directory down")

func (d *flakyDir) Register(ctx context.Context, r directory.Registration, ttl time.Duration) error {
	d.mu.Lock()
	d.calls[r.Server]++
	d.mu.Unlock()
	if d.down.Load() {
		return errDown
	}
	return d.Memory.Register(ctx, r, ttl)
}

func (d *flakyDir) count(server string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[server]
}

func TestRegistrarRetriesUntilTheDirectoryReturns(t *testing.T) {
	mem := directory.NewMemory()
	defer mem.Close()
	dir := &flakyDir{Memory: mem, calls: map[string]int{}}
	system := testutil.ActorSystem(t)
	const ttl = 300 * time.Millisecond
	reg, err := spawnRegistrar(system.Root, "registrar", dir, ttl, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	key := directory.Key{Topic: "t"}
	node := directory.Node{Host: "127.0.0.1", CallPort: 1}
	keep := directory.Registration{Key: key, Server: "keep", Node: node}
	gone := directory.Registration{Key: key, Server: "gone", Node: node}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range []directory.Registration{keep, gone} {
		if err := reg.register(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	lookup := func() []string {
		es, err := mem.Lookup(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Server)
		}
		return names
	}
	// Refreshes keep both alive past their TTL.
	start := dir.count("keep")
	testutil.WaitFor(t, 5*time.Second, "three refreshes", func() bool { return dir.count("keep") >= start+3 })
	if got := lookup(); len(got) != 2 {
		t.Fatalf("after refreshes: %v, want both", got)
	}
	// Deregistered: removed at once and never refreshed again.
	if err := reg.deregister(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if got := lookup(); len(got) != 1 || got[0] != "keep" {
		t.Fatalf("after deregister: %v, want [keep]", got)
	}
	goneCalls := dir.count("gone")
	// An outage: the entry expires, attempts are retried and counted.
	dir.down.Store(true)
	testutil.WaitFor(t, 5*time.Second, "the entry to expire during the outage", func() bool { return len(lookup()) == 0 })
	testutil.WaitFor(t, 5*time.Second, "retries", func() bool { return reg.errors.Load() >= 3 })
	// The directory returns: the registration comes back by itself.
	dir.down.Store(false)
	testutil.WaitFor(t, 5*time.Second, "the registration to come back", func() bool { return len(lookup()) == 1 })
	if n := dir.count("gone"); n != goneCalls {
		t.Fatalf("a deregistered server was registered again (%d calls, was %d)", n, goneCalls)
	}
	if err := reg.stop(); err != nil {
		t.Fatal(err)
	}
}
