// Package zmqmsg gives concurrent Go services brokerless RPC over ZeroMQ.
//
// It re-thinks the OpenStack oslo.messaging ZeroMQ driver ("zmqv2") as a Go
// engine without eventlet: every node runs a small proxy close to its
// servers, a directory says which nodes serve which topic, and clients talk
// to the proxies directly. There is no central broker.
//
// # Patterns
//
// CALL is a blocking request/reply with a deadline: Client.Call. CAST is
// one-way to one server, acknowledged once its handler ran (with its
// outcome): Client.Cast; DirectCast sends it over PUSH/PULL without an ACK.
// FANOUT reaches every server of a topic (a Target with Fanout), and NOTIFY
// one member of every listener pool (Transport.Notifier, Transport.Listen).
// Each has its own pipeline and port; docs/design.md §5 is the wire format.
//
// # Quick start
//
//	tr, err := zmqmsg.New(zmqmsg.Config{})        // node on 127.0.0.1:9501
//	defer tr.Close()
//	srv, err := tr.Serve(zmqmsg.Target{Topic: "calculator"}, zmqmsg.Endpoints{
//		"add": zmqmsg.Method(func(ctx context.Context, a [2]int) (int, error) { return a[0] + a[1], nil }),
//	})
//	defer srv.Stop(context.Background())
//	var sum int
//	err = tr.Client(zmqmsg.Target{Topic: "calculator"}).Call(ctx, "add", [2]int{1, 2}, &sum)
//
// # Nodes, ports and the directory
//
// A Transport is one node. It binds one TCP port per pipeline (Config.Ports;
// 9501 for calls by default, AnyPort for a free one) on Config.Host, and
// registers its servers in Config.Directory with a TTL that it refreshes. A
// client looks a target up in the directory (cached, and refreshed on
// change), picks a server round robin (or the named one), and sends the
// request to that server's node over one DEALER socket per node.
//
// # Errors
//
// Every failure is a typed error: ErrTimeout (matching
// context.DeadlineExceeded), ErrNoServers, ErrDirectoryUnavailable,
// ErrUnavailable (never sent: its node could not be connected to),
// ErrNodeDown (its node was lost: it may have run), ErrClosed, ErrTooLarge,
// ErrOverloaded, *RemoteError for a handler's error (matching ErrNoSuchMethod
// for an unknown method). A cancelled ctx returns ctx.Err() as is. Every
// message that is dropped (late replies, malformed frames from the network,
// requests that expired) is counted in Transport.Stats.
//
// # Concurrency
//
// Transport, Client and Server are safe for concurrent use. Inside, every
// ZeroMQ socket is owned by exactly one goroutine (a poller loop); callers
// hand it typed commands. See docs/design.md for the ownership table, the
// frame layout and the measured cost of each hop.
package zmqmsg
