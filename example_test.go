package zmqmsg_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

// A server and a client on two nodes of one process, sharing a directory.
func Example() {
	dir := directory.NewMemory()
	defer dir.Close()
	server, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer server.Close()
	client, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()

	srv, err := server.Serve(zmqmsg.Target{Topic: "calculator"}, zmqmsg.Endpoints{
		"add": zmqmsg.Method(func(ctx context.Context, a [2]int) (int, error) { return a[0] + a[1], nil }),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var sum int
	if err := client.Client(zmqmsg.Target{Topic: "calculator"}).Call(ctx, "add", [2]int{2, 3}, &sum); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("2 + 3 =", sum)
	// Output: 2 + 3 = 5
}

// A handler's error reaches the caller as a *RemoteError.
func ExampleRemoteError() {
	dir := directory.NewMemory()
	defer dir.Close()
	node, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	srv, err := node.Serve(zmqmsg.Target{Topic: "calculator"}, zmqmsg.Endpoints{
		"div": zmqmsg.Method(func(ctx context.Context, a [2]int) (int, error) {
			if a[1] == 0 {
				return 0, errors.New("division by zero")
			}
			return a[0] / a[1], nil
		}),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := node.Client(zmqmsg.Target{Topic: "calculator"})
	var re *zmqmsg.RemoteError
	if err := c.Call(ctx, "div", [2]int{1, 0}, nil); errors.As(err, &re) {
		fmt.Println("remote:", re.Message)
	}
	if err := c.Call(ctx, "mul", [2]int{1, 0}, nil); errors.Is(err, zmqmsg.ErrNoSuchMethod) {
		fmt.Println("no such method")
	}
	// Output:
	// remote: division by zero
	// no such method
}

// A call whose deadline passes fails with ErrTimeout, which is also a
// context.DeadlineExceeded.
func ExampleClient_Call_timeout() {
	dir := directory.NewMemory()
	defer dir.Close()
	node, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	srv, err := node.Serve(zmqmsg.Target{Topic: "slow"}, zmqmsg.Endpoints{
		"wait": func(ctx context.Context, _ zmqmsg.Args) (any, error) {
			<-ctx.Done() // the caller's deadline travels with the request
			return nil, ctx.Err()
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = node.Client(zmqmsg.Target{Topic: "slow"}).Call(ctx, "wait", nil, nil)
	fmt.Println(errors.Is(err, zmqmsg.ErrTimeout), errors.Is(err, context.DeadlineExceeded))
	// Output: true true
}

// A cast returns once the server has run its handler, with the handler's
// error if it failed (a cast to an unknown method too); a fanout cast reaches
// every server of the topic.
func ExampleClient_Cast() {
	dir := directory.NewMemory()
	defer dir.Close()
	node, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	got := make(chan string, 3)
	for _, name := range []string{"a", "b"} {
		srv, err := node.Serve(zmqmsg.Target{Topic: "audit", Server: name}, zmqmsg.Endpoints{
			"log": zmqmsg.Method(func(ctx context.Context, line string) (struct{}, error) {
				got <- name + ": " + line
				return struct{}{}, nil
			}),
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer srv.Stop(context.Background())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := node.Client(zmqmsg.Target{Topic: "audit", Server: "a"}).Cast(ctx, "log", "to a only"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-got)
	err = node.Client(zmqmsg.Target{Topic: "audit", Server: "a"}).Cast(ctx, "lgo", "a typo")
	fmt.Println(errors.Is(err, zmqmsg.ErrNoSuchMethod))
	if err := node.Client(zmqmsg.Target{Topic: "audit", Fanout: true}).Cast(ctx, "log", "to all"); err != nil {
		fmt.Println(err)
		return
	}
	lines := []string{<-got, <-got}
	slices.Sort(lines)
	fmt.Println(lines)
	// Output:
	// a: to a only
	// true
	// [a: to all b: to all]
}

// Each listener pool receives one copy of every notification.
func ExampleTransport_Listen() {
	dir := directory.NewMemory()
	defer dir.Close()
	node, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	got := make(chan string, 2)
	for _, pool := range []string{"billing", "audit"} {
		l, err := node.Listen([]string{"instances"}, pool, func(ctx context.Context, n zmqmsg.Notification) error {
			var vcpus int
			if err := n.Decode(&vcpus); err != nil {
				return err
			}
			got <- fmt.Sprintf("%s: %s %s vcpus=%d", pool, n.Priority, n.EventType, vcpus)
			return nil
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer l.Stop(context.Background())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := node.Notifier("compute-1", "instances").Info(ctx, "instance.create", 4); err != nil {
		fmt.Println(err)
		return
	}
	lines := []string{<-got, <-got}
	slices.Sort(lines)
	fmt.Println(lines[0])
	fmt.Println(lines[1])
	// Output:
	// audit: info instance.create vcpus=4
	// billing: info instance.create vcpus=4
}

// Interceptors around every message: the client's adds the caller's tenant
// to the metadata, the server's refuses requests without one before any
// handler runs.
func ExampleWithServerInterceptors() {
	dir := directory.NewMemory()
	defer dir.Close()
	requireTenant := func(ctx context.Context, info *zmqmsg.ServerInfo, args zmqmsg.Args, handle zmqmsg.Handler) (any, error) {
		if zmqmsg.MetadataFrom(ctx)["tenant"] == "" {
			return nil, errors.New("no tenant")
		}
		return handle(ctx, args)
	}
	server, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}},
		zmqmsg.WithServerInterceptors(requireTenant))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer server.Close()
	srv, err := server.Serve(zmqmsg.Target{Topic: "accounts"}, zmqmsg.Endpoints{
		"owner": func(ctx context.Context, _ zmqmsg.Args) (any, error) {
			return "owned by " + zmqmsg.MetadataFrom(ctx)["tenant"], nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop(context.Background())

	addTenant := func(ctx context.Context, info *zmqmsg.CallInfo, args, reply any, invoke zmqmsg.Invoker) error {
		return invoke(zmqmsg.WithMetadata(ctx, "tenant", "acme"), info, args, reply)
	}
	withTenant, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}},
		zmqmsg.WithClientInterceptors(addTenant))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer withTenant.Close()
	plain, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer plain.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var s string
	err = withTenant.Client(zmqmsg.Target{Topic: "accounts"}).Call(ctx, "owner", nil, &s)
	fmt.Println(s, err)
	err = plain.Client(zmqmsg.Target{Topic: "accounts"}).Call(ctx, "owner", nil, &s)
	var re *zmqmsg.RemoteError
	fmt.Println(errors.As(err, &re), re.Message)
	// Output:
	// owned by acme <nil>
	// true no tenant
}

// Scatter-gather: every server of a topic answers, each reply keyed by its
// server.
func ExampleClient_CallAll() {
	dir := directory.NewMemory()
	defer dir.Close()
	node, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	for _, name := range []string{"eu-1", "us-1"} {
		srv, err := node.Serve(zmqmsg.Target{Topic: "regions", Server: name}, zmqmsg.Endpoints{
			"load": func(context.Context, zmqmsg.Args) (any, error) { return len(name), nil },
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer srv.Stop(context.Background())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	replies, err := node.Client(zmqmsg.Target{Topic: "regions"}).CallAll(ctx, "load", nil, zmqmsg.StallAfter(time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	slices.SortFunc(replies, func(a, b zmqmsg.ServerReply) int { return strings.Compare(a.Server, b.Server) })
	for _, r := range replies {
		var load int
		if err := r.Decode(&load); err != nil {
			fmt.Println(r.Server, "failed:", err)
			continue
		}
		fmt.Println(r.Server, load)
	}
	// Output:
	// eu-1 4
	// us-1 4
}

// A client for an idempotent method: calls go to the least busy server,
// and one refused as overloaded, or lost with its node, is tried again on
// another server within its deadline.
func ExampleRetry() {
	dir := directory.NewMemory()
	defer dir.Close()
	node, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	srv, err := node.Serve(zmqmsg.Target{Topic: "inventory"}, zmqmsg.Endpoints{
		"count": zmqmsg.Method(func(ctx context.Context, sku string) (int, error) { return len(sku), nil }),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop(context.Background())

	inventory := node.Client(zmqmsg.Target{Topic: "inventory"},
		zmqmsg.LeastOutstanding(),
		zmqmsg.Retry(zmqmsg.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond, Methods: []string{"count"}}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := inventory.Call(ctx, "count", "sku-123", &n); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(n)
	// Output: 7
}

// Every server answers ping, info and stats without user code; Discover
// asks every server of every topic what it offers.
func ExampleTransport_Discover() {
	dir := directory.NewMemory()
	defer dir.Close()
	node, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	srv, err := node.Serve(zmqmsg.Target{Topic: "compute", Server: "c1"}, zmqmsg.Endpoints{
		"add": zmqmsg.Method(func(_ context.Context, a [2]int) (int, error) { return a[0] + a[1], nil }),
	}, zmqmsg.ServeMetadata(map[string]string{"description": "adds numbers"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := node.Client(zmqmsg.Target{Topic: "compute"})
	var sum int
	if err := c.Call(ctx, "add", [2]int{1, 2}, &sum); err != nil {
		fmt.Println(err)
		return
	}
	found, err := node.Discover(ctx, zmqmsg.Target{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, d := range found {
		fmt.Println(d.Topic, d.Server, d.Info.Methods, d.Info.Metadata["description"])
	}
	st, err := c.ServerStats(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range st.Methods {
		fmt.Println(m.Method, "requests:", m.Requests, "errors:", m.Errors)
	}
	// Output:
	// compute c1 [add] adds numbers
	// add requests: 1 errors: 0
}

// A long call that asks its server for a heartbeat every 50ms: it may run
// as long as its deadline allows, and fails with ErrServerLost within
// 100ms of its server going silent.
func ExampleMonitorEvery() {
	dir := directory.NewMemory()
	defer dir.Close()
	node, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	srv, err := node.Serve(zmqmsg.Target{Topic: "images"}, zmqmsg.Endpoints{
		"resize": func(ctx context.Context, _ zmqmsg.Args) (any, error) {
			select { // the work: longer than the monitor's silence
			case <-time.After(200 * time.Millisecond):
				return "resized", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := node.Client(zmqmsg.Target{Topic: "images"}, zmqmsg.MonitorEvery(50*time.Millisecond))
	var out string
	switch err := c.Call(ctx, "resize", nil, &out); {
	case errors.Is(err, zmqmsg.ErrServerLost):
		fmt.Println("the server went silent:", err)
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println(out)
	}
	// Output: resized
}
