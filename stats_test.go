package zmqmsg

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
)

// Issue 10, item 4: a node's counters can be asked for over the wire (the
// STATS request), from an embedded node's proxy and from a daemon, and
// they count the traffic sent.
func TestNodeStatsOverTheWire(t *testing.T) {
	dir := newDir(t)
	srv := newNode(t, dir)
	var hits sync.Map
	serve(t, srv, Target{Topic: "svc"}, whoAmI("s", &hits))
	client := newNode(t, dir)
	ctx := testCtx(t, 10*time.Second)
	for i := range 5 {
		if err := client.Client(Target{Topic: "svc"}).Call(ctx, "who", i, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Client(Target{Topic: "svc", Server: "nobody"}).Call(ctx, "who", 0, nil); err == nil {
		t.Fatal("a call to an unknown server succeeded")
	}
	st, err := client.NodeStats(ctx, srv.Node())
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != "node" || st.Counters["requests"] != 5 || st.Counters["replies"] < 5 {
		t.Fatalf("embedded node's stats %+v: want role node, 5 requests routed", st)
	}

	d := newDaemonNode(t)
	serve(t, d.members[0], Target{Topic: "svc"}, whoAmI("m", &hits))
	for i := range 3 {
		if err := d.client.Client(Target{Topic: "svc"}).Call(ctx, "who", i, nil); err != nil {
			t.Fatal(err)
		}
	}
	st, err = d.client.NodeStats(ctx, d.proxy.Node())
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != "daemon" || st.Counters["requests"] != 3 || st.Members != 1 || st.InFlight != 0 {
		t.Fatalf("daemon's stats %+v: want role daemon, 3 requests relayed, 1 member, none in flight", st)
	}
}

// Issue 10, item 5: a server publishes its method names in its directory
// entry (the one list tools read), and a call to a method it does not have
// names the ones it offers.
func TestServersPublishTheirMethods(t *testing.T) {
	dir := newDir(t)
	srv := newNode(t, dir)
	noop := Method(func(ctx context.Context, x int) (int, error) { return x, nil })
	serve(t, srv, Target{Topic: "calc"}, Endpoints{"sub": noop, "add": noop})
	es, err := dir.Lookup(context.Background(), directory.Key{Topic: "calc"})
	if err != nil || len(es) != 1 || !slices.Equal(es[0].Methods, []string{"add", "sub"}) {
		t.Fatalf("directory entries %+v, %v: want methods [add sub]", es, err)
	}
	err = newNode(t, dir).Client(Target{Topic: "calc"}).Call(testCtx(t, 10*time.Second), "mul", 1, nil)
	var re *RemoteError
	if !errors.Is(err, ErrNoSuchMethod) || !errors.As(err, &re) || !strings.Contains(re.Message, `"mul" (offered: "add", "sub")`) {
		t.Fatalf("call to an unknown method: %v, want NoSuchMethod naming the methods offered", err)
	}
}
