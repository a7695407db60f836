package zmqmsg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// taggedCodec is JSON behind a tag: a codec a JSON decoder cannot read,
// and that cannot encode nil.
type taggedCodec struct{}

func (taggedCodec) Marshal(v any) ([]byte, error) {
	if v == nil {
		return nil, errors.New("taggedCodec: cannot encode nil") // as gob
	}
	b, err := json.Marshal(v)
	return append([]byte("T:"), b...), err
}

func (taggedCodec) Unmarshal(data []byte, v any) error {
	b, ok := bytes.CutPrefix(data, []byte("T:"))
	if !ok {
		return fmt.Errorf("taggedCodec: no tag in %q", data)
	}
	return json.Unmarshal(b, v)
}

func findMethod(st ServerStats, m string) MethodStats {
	for _, ms := range st.Methods {
		if ms.Method == m {
			return ms
		}
	}
	return MethodStats{}
}

// Every server answers ping, info and stats without user code (no handler,
// no server interceptor runs), in JSON whatever the Transport's codec, and
// its per-method records count what its handlers did.
func TestIntrospection(t *testing.T) {
	dir := newDir(t)
	var intercepted atomic.Int64
	srv := startTransport(t, Config{Directory: dir, Ports: Ports{Call: AnyPort}, Codec: taggedCodec{}},
		WithServerInterceptors(func(ctx context.Context, info *ServerInfo, args Args, h Handler) (any, error) {
			intercepted.Add(1)
			return h(ctx, args)
		}))
	entered, release := make(chan struct{}, 1), make(chan struct{})
	s, err := srv.Serve(Target{Topic: "svc", Server: "s1"}, Endpoints{
		"add":  Method(func(_ context.Context, a [2]int) (int, error) { return a[0] + a[1], nil }),
		"fail": Method(func(_ context.Context, n int) (int, error) { return 0, fmt.Errorf("failure %d", n) }),
		"boom": func(context.Context, Args) (any, error) { panic("boom") },
		"slow": func(ctx context.Context, _ Args) (any, error) {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return 0, nil
		},
	}, ServeMetadata(map[string]string{"description": "adds numbers", "version": "1.2.0"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(testCtx(t, 10*time.Second)) })
	t.Cleanup(func() { close(release) })
	cl := startTransport(t, Config{Directory: dir, Ports: Ports{Call: AnyPort}, Codec: taggedCodec{}})
	c := cl.Client(Target{Topic: "svc"})
	ctx := testCtx(t, 30*time.Second)

	var sum int
	for i := range 3 {
		if err := c.Call(ctx, "add", [2]int{i, 1}, &sum); err != nil || sum != i+1 {
			t.Fatalf("add: %d, %v", sum, err)
		}
	}
	if err := c.Cast(ctx, "add", [2]int{1, 1}); err != nil {
		t.Fatalf("cast add: %v", err)
	}
	before := time.Now()
	for i := range 2 {
		if err := c.Call(ctx, "fail", i, nil); !errors.As(err, new(*RemoteError)) {
			t.Fatalf("fail: %v, want a RemoteError", err)
		}
	}
	if err := c.Call(ctx, "boom", 0, nil); !errors.As(err, new(*RemoteError)) {
		t.Fatalf("boom: %v, want a RemoteError", err)
	}
	if err := c.Call(ctx, "nope", 0, nil); !errors.Is(err, ErrNoSuchMethod) {
		t.Fatalf("nope: %v, want ErrNoSuchMethod", err)
	}
	slowDone := make(chan error, 1)
	go func() { slowDone <- c.Call(ctx, "slow", 0, nil) }()
	<-entered
	handled := intercepted.Load()

	p, err := c.Ping(ctx)
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if p.Server != "s1" || p.Node != srv.Node().ID() || p.Version == "" || p.Uptime <= 0 || p.Started.After(before) {
		t.Errorf("Ping = %+v", p)
	}
	in, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if in.Server != "s1" || in.Topic != "svc" || in.Exchange != "" || in.Protocol != int(envelope.Version) ||
		!slices.Equal(in.Methods, []string{"add", "boom", "fail", "slow"}) || in.Metadata["description"] != "adds numbers" || in.Metadata["version"] != "1.2.0" {
		t.Errorf("Info = %+v", in)
	}
	st, err := c.ServerStats(ctx)
	if err != nil {
		t.Fatalf("ServerStats: %v", err)
	}
	add, fail, slow := findMethod(st, "add"), findMethod(st, "fail"), findMethod(st, "slow")
	if add.Requests != 4 || add.Errors != 0 || add.InFlight != 0 || add.ProcessingTime <= 0 || add.AverageTime != add.ProcessingTime/4 || add.LastError != "" {
		t.Errorf("add = %+v, want 4 requests (3 calls, 1 cast), no error", add)
	}
	if fail.Requests != 2 || fail.Errors != 2 || fail.LastError != "failure 1" || fail.LastErrorAt.Before(before) {
		t.Errorf("fail = %+v, want 2 requests, 2 errors, last \"failure 1\"", fail)
	}
	if slow.Requests != 1 || slow.InFlight != 1 {
		t.Errorf("slow = %+v, want 1 request in flight", slow)
	}
	if boom := findMethod(st, "boom"); boom.Requests != 1 || boom.Errors != 1 || boom.InFlight != 0 || boom.LastError == "" {
		t.Errorf("boom = %+v, want 1 request, 1 error (the panic), none in flight", boom)
	}
	if st.NoSuchMethod != 1 || len(st.Methods) != 4 {
		t.Errorf("stats: no_such_method %d, %d methods; want 1, 4", st.NoSuchMethod, len(st.Methods))
	}
	if got := s.Stats(); findMethod(got, "add").Requests != 4 || got.Topic != "svc" {
		t.Errorf("Server.Stats: %+v", got)
	}
	if all := srv.ServerStats(); len(all) != 1 || all[0].Server != "s1" || findMethod(all[0], "fail").Errors != 2 {
		t.Errorf("Transport.ServerStats: %+v", all)
	}
	if n := intercepted.Load(); n != handled {
		t.Errorf("the server interceptor saw %d introspection requests", n-handled)
	}
	var re *RemoteError
	if err := c.Call(ctx, "zmqmsg.bogus", nil, nil); !errors.As(err, &re) || !errors.Is(err, ErrNoSuchMethod) {
		t.Errorf("zmqmsg.bogus: %v, want a NoSuchMethod RemoteError", err)
	}
	if st := s.Stats(); st.NoSuchMethod != 2 {
		t.Errorf("no_such_method %d after zmqmsg.bogus, want 2", st.NoSuchMethod)
	}
	release <- struct{}{}
	if err := <-slowDone; err != nil {
		t.Fatalf("slow: %v", err)
	}
	testutil.WaitFor(t, 5*time.Second, "slow to finish", func() bool { return findMethod(s.Stats(), "slow").InFlight == 0 })
}

func TestServeRefusesReservedMethods(t *testing.T) {
	tr := newNode(t, newDir(t))
	h := func(context.Context, Args) (any, error) { return nil, nil }
	for _, m := range []string{PingMethod, "zmqmsg.anything"} {
		if _, err := tr.Serve(Target{Topic: "r"}, Endpoints{"ok": h, m: h}); !errors.Is(err, ErrReservedMethod) {
			t.Errorf("Serve with %q: %v, want ErrReservedMethod", m, err)
		}
	}
}

// Discover asks every server of every topic of an exchange: new servers
// describe themselves, a server older than introspection says it has no
// such method, a crashed node is unreached; another exchange is not asked.
func TestDiscover(t *testing.T) {
	dir := newDir(t)
	a, b := newNode(t, dir), newNode(t, dir)
	h := Endpoints{"m": func(context.Context, Args) (any, error) { return nil, nil }}
	serve(t, a, Target{Topic: "alpha", Server: "a1"}, h)
	serve(t, b, Target{Topic: "alpha", Server: "b1"}, h)
	serve(t, b, Target{Topic: "beta", Server: "b2"}, h)
	serve(t, a, Target{Exchange: "other", Topic: "gamma", Server: "g1"}, h)
	// An older server: its dispatch knows no zmqmsg.info.
	old := startRawNode(t, dir, directory.Key{Topic: "beta"}, "old", envelope.KindCall, func(m *envelope.Message) envelope.Message {
		return envelope.Message{Kind: envelope.KindError, ID: m.ID, Code: envelope.CodeNoSuchMethod, ErrType: "NoSuchMethod",
			ErrMsg: fmt.Sprintf("zmqmsg: no such method: %q (offered: \"m\")", m.Method)}
	})
	gone := directory.Node{Host: "127.0.0.1", CallPort: freePort(t)}
	if err := dir.Register(context.Background(), directory.Registration{Key: directory.Key{Topic: "beta"}, Server: "crashed", Node: gone}, time.Minute); err != nil {
		t.Fatal(err)
	}
	cl := newNode(t, dir)
	ctx := testCtx(t, 30*time.Second)

	found, err := cl.Discover(ctx, Target{})
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	var got []string
	for _, d := range found {
		got = append(got, d.Topic+"/"+d.Server)
		switch d.Server {
		case "a1", "b1", "b2":
			if d.Err != nil || d.Info.Server != d.Server || d.Info.Topic != d.Topic || !slices.Equal(d.Info.Methods, []string{"m"}) {
				t.Errorf("%s: %+v", d.Server, d)
			}
		case "old":
			if !errors.Is(d.Err, ErrNoSuchMethod) {
				t.Errorf("old server: %v, want ErrNoSuchMethod", d.Err)
			}
		case "crashed":
			if !errors.Is(d.Err, ErrUnreached) {
				t.Errorf("crashed: %v, want ErrUnreached", d.Err)
			}
		}
	}
	if want := []string{"alpha/a1", "alpha/b1", "beta/b2", "beta/crashed", "beta/old"}; !slices.Equal(got, want) {
		t.Fatalf("Discover found %v, want %v", got, want)
	}
	if old.casts.Load() != 1 {
		t.Errorf("the old server got %d requests, want 1", old.casts.Load())
	}
	one, err := cl.Discover(ctx, Target{Exchange: "other", Topic: "gamma"})
	if err != nil || len(one) != 1 || one[0].Info.Exchange != "other" || one[0].Err != nil {
		t.Fatalf("Discover gamma: %+v, %v", one, err)
	}
	if _, err := cl.Discover(ctx, Target{Topic: "absent"}); !errors.Is(err, ErrNoServers) {
		t.Fatalf("Discover of an unserved topic: %v, want ErrNoServers", err)
	}
}

// Through a node proxy daemon the member's server answers.
func TestIntrospectionThroughTheDaemon(t *testing.T) {
	d := newDaemonNode(t)
	serve(t, d.members[1], Target{Topic: "intro", Server: "m1"}, Endpoints{"m": func(context.Context, Args) (any, error) { return nil, nil }})
	p, err := d.client.Client(Target{Topic: "intro"}).Ping(testCtx(t, 20*time.Second))
	if err != nil || p.Server != "m1" || p.Node != d.proxy.Node().ID() {
		t.Fatalf("Ping through the daemon: %+v, %v", p, err)
	}
}

// The answers in docs/design.md §21 name exactly the fields a server sends.
func TestIntrospectionSpec(t *testing.T) {
	raw, err := os.ReadFile("docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	block := func(marker string) map[string]any {
		_, rest, ok := strings.Cut(string(raw), "<!-- spec:"+marker+" -->\n```json\n")
		body, _, ok2 := strings.Cut(rest, "```")
		var m map[string]any
		if !ok || !ok2 {
			t.Fatalf("no %s block in docs/design.md", marker)
		} else if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("%s block: %v", marker, err)
		}
		return m
	}
	sent := func(v any) map[string]any {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m
	}
	now := time.Now()
	ping := Ping{Server: "s", Node: "n", Version: "v", Started: now, Uptime: 1}
	info := ServiceInfo{Ping: ping, Methods: []string{"m"}, Metadata: map[string]string{"k": "v"}, Protocol: 1}
	stats := ServerStats{Ping: ping, Exchange: "x", Topic: "t", Methods: []MethodStats{{Method: "m", Requests: 1, Errors: 1, InFlight: 1, ProcessingTime: 1, AverageTime: 1, LastError: "e", LastErrorAt: now}}}
	keys := func(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
	for _, c := range []struct {
		name      string
		doc, sent map[string]any
	}{{"info-answer", block("info-answer"), sent(info)}, {"stats-answer", block("stats-answer"), sent(stats)}} {
		if d, s := keys(c.doc), keys(c.sent); !slices.Equal(d, s) {
			t.Errorf("%s: the doc names %v, a server sends %v", c.name, d, s)
		}
	}
	docRec := block("stats-answer")["methods"].([]any)[0].(map[string]any)
	sentRec := sent(stats)["methods"].([]any)[0].(map[string]any)
	if d, s := keys(docRec), keys(sentRec); !slices.Equal(d, s) {
		t.Errorf("method record: the doc names %v, a server sends %v", d, s)
	}
}
