package zmqmsg

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
)

// newNodeWith starts a Transport with opts, like newNode.
func newNodeWith(t testing.TB, dir directory.Directory, opts ...Option) *Transport {
	t.Helper()
	return startTransport(t, Config{Directory: dir, Ports: Ports{Call: AnyPort}}, opts...)
}

// trail records what the interceptors and handlers of one test did, in
// order.
type trail struct {
	mu    sync.Mutex
	steps []string
}

func (tr *trail) add(format string, a ...any) {
	tr.mu.Lock()
	tr.steps = append(tr.steps, fmt.Sprintf(format, a...))
	tr.mu.Unlock()
}

func (tr *trail) get() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.steps)
}

func recordClient(tr *trail, name string) ClientInterceptor {
	return func(ctx context.Context, info *CallInfo, args, reply any, invoke Invoker) error {
		tr.add("%s>", name)
		err := invoke(ctx, info, args, reply)
		tr.add("<%s", name)
		return err
	}
}

func recordServer(tr *trail, name string) ServerInterceptor {
	return func(ctx context.Context, info *ServerInfo, args Args, handle Handler) (any, error) {
		tr.add("%s>", name)
		res, err := handle(ctx, args)
		tr.add("<%s", name)
		return res, err
	}
}

func TestInterceptorChainsRunInOrder(t *testing.T) {
	dir := newDir(t)
	var tr trail
	srv := newNodeWith(t, dir, WithServerInterceptors(recordServer(&tr, "s1"), recordServer(&tr, "s2")), WithServerInterceptors(recordServer(&tr, "s3")))
	serve(t, srv, Target{Topic: "chain"}, Endpoints{"m": func(_ context.Context, args Args) (any, error) {
		tr.add("handler")
		return args.Raw(), nil
	}})
	cli := newNodeWith(t, dir, WithClientInterceptors(recordClient(&tr, "c1"), recordClient(&tr, "c2"), recordClient(&tr, "c3")))
	var out []byte
	if err := cli.Client(Target{Topic: "chain"}).Call(testCtx(t, 10*time.Second), "m", []byte("x"), &out); err != nil {
		t.Fatalf("Call: %v", err)
	}
	if string(out) != "x" {
		t.Fatalf("reply %q, want x", out)
	}
	want := []string{"c1>", "c2>", "c3>", "s1>", "s2>", "s3>", "handler", "<s3", "<s2", "<s1", "<c3", "<c2", "<c1"}
	if got := tr.get(); !slices.Equal(got, want) {
		t.Fatalf("order %v\nwant  %v", got, want)
	}
}

func TestInterceptorsShortCircuit(t *testing.T) {
	dir := newDir(t)
	var ran atomic.Int64
	errDenied := errors.New("denied by policy")
	srv := newNodeWith(t, dir, WithServerInterceptors(func(ctx context.Context, info *ServerInfo, args Args, handle Handler) (any, error) {
		if info.Method == "forbidden" {
			return nil, errDenied
		}
		return handle(ctx, args)
	}))
	serve(t, srv, Target{Topic: "gate"}, Endpoints{
		"forbidden": func(context.Context, Args) (any, error) { ran.Add(1); return nil, nil },
		"open":      func(context.Context, Args) (any, error) { ran.Add(1); return nil, nil },
	})
	cli := newNodeWith(t, dir, WithClientInterceptors(func(ctx context.Context, info *CallInfo, args, reply any, invoke Invoker) error {
		if info.Method == "local-refusal" {
			return errDenied
		}
		return invoke(ctx, info, args, reply)
	}))
	c := cli.Client(Target{Topic: "gate"})
	ctx := testCtx(t, 10*time.Second)

	if err := c.Call(ctx, "local-refusal", 1, nil); !errors.Is(err, errDenied) {
		t.Fatalf("client short-circuit: %v, want errDenied", err)
	}
	if st := cli.Stats(); st.Calls != 0 {
		t.Fatalf("a refused call was sent: Stats.Calls = %d", st.Calls)
	}
	var re *RemoteError
	if err := c.Call(ctx, "forbidden", 1, nil); !errors.As(err, &re) || !strings.Contains(re.Message, "denied by policy") {
		t.Fatalf("server short-circuit: %v, want a RemoteError with the interceptor's error", err)
	}
	if err := c.Call(ctx, "open", 1, nil); err != nil {
		t.Fatalf("open: %v", err)
	}
	if n := ran.Load(); n != 1 {
		t.Fatalf("handlers ran %d times, want 1 (only open)", n)
	}
}

func TestInterceptorPanicsAreErrors(t *testing.T) {
	dir := newDir(t)
	srv := newNodeWith(t, dir, WithServerInterceptors(func(ctx context.Context, info *ServerInfo, args Args, handle Handler) (any, error) {
		if info.Method == "boom" {
			panic("server interceptor exploded")
		}
		return handle(ctx, args)
	}))
	serve(t, srv, Target{Topic: "panics"}, Endpoints{
		"boom": func(context.Context, Args) (any, error) { return nil, nil },
		"ok":   func(context.Context, Args) (any, error) { return "fine", nil },
	})
	cli := newNodeWith(t, dir, WithClientInterceptors(func(ctx context.Context, info *CallInfo, args, reply any, invoke Invoker) error {
		if info.Method == "client-boom" {
			panic("client interceptor exploded")
		}
		return invoke(ctx, info, args, reply)
	}))
	c := cli.Client(Target{Topic: "panics"})
	ctx := testCtx(t, 10*time.Second)

	var re *RemoteError
	if err := c.Call(ctx, "boom", 1, nil); !errors.As(err, &re) || re.Type != "panic" || !strings.Contains(re.Message, "exploded") {
		t.Fatalf("server interceptor panic: %v, want RemoteError of type panic", err)
	}
	if err := c.Call(ctx, "client-boom", 1, nil); !errors.Is(err, ErrInterceptorPanic) || !strings.Contains(err.Error(), "client interceptor exploded") {
		t.Fatalf("client interceptor panic: %v, want ErrInterceptorPanic with its value", err)
	}
	var s string
	if err := c.Call(ctx, "ok", 1, &s); err != nil || s != "fine" {
		t.Fatalf("after the panics: %q, %v", s, err)
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	dir := newDir(t)
	seen := make(chan Metadata, 16)
	var serverSaw trail
	srv := newNodeWith(t, dir, WithServerInterceptors(func(ctx context.Context, info *ServerInfo, args Args, handle Handler) (any, error) {
		serverSaw.add("%s %s tenant=%s", info.Pattern, info.Method, MetadataFrom(ctx)["tenant"])
		return handle(ctx, args)
	}))
	record := func(ctx context.Context, _ Args) (any, error) {
		seen <- maps.Clone(MetadataFrom(ctx))
		return nil, nil
	}
	serve(t, srv, Target{Topic: "meta"}, Endpoints{"m": record})
	l, err := srv.Listen([]string{"meta-events"}, "pool", func(ctx context.Context, n Notification) error {
		seen <- maps.Clone(MetadataFrom(ctx))
		return nil
	})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = l.Stop(context.Background()) })

	// The client interceptor adds a key of its own to every message.
	var clientSaw trail
	cli := newNodeWith(t, dir, WithClientInterceptors(func(ctx context.Context, info *CallInfo, args, reply any, invoke Invoker) error {
		clientSaw.add("%s %s tenant=%s", info.Pattern, info.Method, OutgoingMetadata(ctx)["tenant"])
		return invoke(WithMetadata(ctx, "via", "interceptor"), info, args, reply)
	}))
	ctx := WithMetadata(testCtx(t, 10*time.Second), "tenant", "acme")
	want := Metadata{"tenant": "acme", "via": "interceptor"}
	expect := func(what string) {
		t.Helper()
		select {
		case got := <-seen:
			if !maps.Equal(got, want) {
				t.Fatalf("%s: handler saw metadata %v, want %v", what, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the handler did not run", what)
		}
	}
	if err := cli.Client(Target{Topic: "meta"}).Call(ctx, "m", 1, nil); err != nil {
		t.Fatalf("Call: %v", err)
	}
	expect("call")
	if err := cli.Client(Target{Topic: "meta"}).Cast(ctx, "m", 1); err != nil {
		t.Fatalf("Cast: %v", err)
	}
	expect("acked cast")
	if err := cli.Client(Target{Topic: "meta"}, DirectCast()).Cast(ctx, "m", 1); err != nil {
		t.Fatalf("direct Cast: %v", err)
	}
	expect("direct cast")
	if err := cli.Client(Target{Topic: "meta", Fanout: true}).Cast(ctx, "m", 1); err != nil {
		t.Fatalf("fanout: %v", err)
	}
	expect("fanout")
	if err := cli.Notifier("pub", "meta-events").Info(ctx, "thing.done", 1); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	expect("notification (its own fields are not user metadata)")

	wantClient := []string{"call m tenant=acme", "cast m tenant=acme", "direct_cast m tenant=acme", "fanout m tenant=acme", "notify thing.done tenant=acme"}
	if got := clientSaw.get(); !slices.Equal(got, wantClient) {
		t.Fatalf("client interceptor saw %v\nwant %v", got, wantClient)
	}
	if got := serverSaw.get(); !slices.Equal(got, wantClient) {
		t.Fatalf("server interceptor saw %v\nwant %v", got, wantClient)
	}

	// No metadata: none in the handler.
	plain := newNode(t, dir)
	if err := plain.Client(Target{Topic: "meta"}).Call(testCtx(t, 10*time.Second), "m", 1, nil); err != nil {
		t.Fatalf("Call without metadata: %v", err)
	}
	if got := <-seen; got != nil {
		t.Fatalf("a call without metadata arrived with %v", got)
	}
}

func TestInvalidMetadataIsRefusedBeforeSending(t *testing.T) {
	dir := newDir(t)
	var ran atomic.Int64
	serve(t, newNode(t, dir), Target{Topic: "bad-meta"}, Endpoints{"m": func(context.Context, Args) (any, error) { ran.Add(1); return nil, nil }})
	cli := newNode(t, dir)
	base := testCtx(t, 10*time.Second)
	many := base
	for i := range MaxMetadata + 1 {
		many = WithMetadata(many, fmt.Sprintf("k%d", i), "v")
	}
	for name, ctx := range map[string]context.Context{
		"notification field": WithMetadata(base, "priority", "x"),
		"reserved prefix":    WithMetadata(base, "zmqmsg.internal", "x"),
		"empty key":          WithMetadata(base, "", "x"),
		"long value":         WithMetadata(base, "k", strings.Repeat("v", 70000)),
		"too many":           many,
	} {
		if err := cli.Client(Target{Topic: "bad-meta"}).Call(ctx, "m", 1, nil); !errors.Is(err, ErrInvalidMetadata) {
			t.Errorf("%s: Call returned %v, want ErrInvalidMetadata", name, err)
		}
		if err := cli.Client(Target{Topic: "bad-meta"}).Cast(ctx, "m", 1); !errors.Is(err, ErrInvalidMetadata) {
			t.Errorf("%s: Cast returned %v, want ErrInvalidMetadata", name, err)
		}
		if err := cli.Notifier("p", "bad-meta-events").Info(ctx, "e", 1); !errors.Is(err, ErrInvalidMetadata) {
			t.Errorf("%s: Notify returned %v, want ErrInvalidMetadata", name, err)
		}
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("handlers ran %d times for refused messages", n)
	}
}

func TestNilInterceptorIsAConfigError(t *testing.T) {
	if _, err := New(Config{Directory: newDir(t), Ports: Ports{Call: AnyPort}}, WithClientInterceptors(nil)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil client interceptor: %v, want ErrInvalidConfig", err)
	}
	if _, err := New(Config{Directory: newDir(t), Ports: Ports{Call: AnyPort}}, WithServerInterceptors(nil)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil server interceptor: %v, want ErrInvalidConfig", err)
	}
}

// Without metadata and interceptors the hooks cost no allocation.
func TestNoMetadataAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		_ = withIncoming(ctx, nil)
		_ = OutgoingMetadata(ctx)
		_ = MetadataFrom(ctx)
	}); n != 0 {
		t.Fatalf("%v allocations without metadata, want 0", n)
	}
}

// The daemon relays a message's metadata to its member untouched.
func TestMetadataThroughTheDaemon(t *testing.T) {
	d := newDaemonNode(t)
	seen := make(chan Metadata, 4)
	serve(t, d.members[0], Target{Topic: "meta-daemon"}, Endpoints{"m": func(ctx context.Context, _ Args) (any, error) {
		seen <- maps.Clone(MetadataFrom(ctx))
		return nil, nil
	}})
	ctx := WithMetadata(WithMetadata(testCtx(t, 10*time.Second), "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), "tenant", "acme")
	c := d.client.Client(Target{Topic: "meta-daemon"})
	if err := c.Call(ctx, "m", 1, nil); err != nil {
		t.Fatalf("Call: %v", err)
	}
	if err := c.Cast(ctx, "m", 1); err != nil {
		t.Fatalf("Cast: %v", err)
	}
	for _, what := range []string{"call", "cast"} {
		if got := <-seen; !maps.Equal(got, OutgoingMetadata(ctx)) {
			t.Fatalf("%s through the daemon: handler saw %v, want %v", what, got, OutgoingMetadata(ctx))
		}
	}
}
