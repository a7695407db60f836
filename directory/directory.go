// Package directory is the service directory of zmqmsg: it records which
// nodes serve which topic, so that a client knows where to send a message.
//
// A server announces itself with [Directory.Register] and keeps the
// announcement alive by registering again before its TTL runs out; a crashed
// server therefore disappears on its own. Clients find servers with
// [Directory.Lookup] and learn about changes with [Directory.Watch].
//
// [Memory] is an in-process implementation, enough when every node lives in
// one process (tests, examples, single-binary deployments). [Redis] is the
// shared implementation for real clusters; [Open] picks one from a URL
// ("memory:", "redis://...", "redis+sentinel://...", "redis+cluster://...").
//
// # Redis data model
//
// Redis 7.0 has no per-field hash expiry, so each target (one [Key]) uses
// three keys sharing a Cluster hash tag, the target id
// escape(Exchange)/escape(Topic) with '%', '{', '}', '/' and control bytes
// percent-encoded:
//
//	<prefix>:{<id>}:servers  sorted set: server name -> expiry, ms on Redis's clock
//	<prefix>:{<id>}:regs     hash: server name -> JSON {"host","call","fanout","notify","cast","curve","methods"}
//	<prefix>:{<id>}:ver      version counter
//	<prefix>:targets         set of target ids, for List (another slot in Cluster)
//	<prefix>:changes         pub/sub channel; the message is the target id
//
// Three Lua scripts (EVALSHA, falling back to EVAL) read the time with
// TIME, so that expiry never depends on client clocks. Register prunes
// expired servers, sets the expiry to now+ttl and stores the node; when a
// server is new or moved, or something was pruned, it raises the version
// to max(version+1, now in ms), which keeps growing across a loss of data,
// and publishes the id. A plain refresh publishes nothing. Lookup prunes
// (publishing if it removed anything) and returns the version, the server
// time and the entries; Deregister removes an entry only if its stored
// node is the caller's. Every script sets the keys' TTL to one minute after
// the last expiry, so abandoned targets vanish; the index is added to by
// every Register and pruned of empty targets by List.
//
// An expiry on Redis's clock becomes local time as receive time +
// (expiry - server now), both from the same script reply.
//
// # Redis client cache
//
// A Redis directory caches every key it looked up or watches, with the
// version and the local expiries. One subscription to the changes channel,
// started by the first Lookup or Watch, re-reads a notified key; each
// (re)subscription and every PollInterval re-read the version of every
// cached key (one pipeline) and re-read the keys that changed; when the
// earliest cached expiry of a key passes, the key is re-read, so that
// watchers learn about servers that died without deregistering. Watchers
// are signalled when the set of registrations changed.
//
// Lookup answers from the cache only while it is trustworthy: the
// subscription is live, no Redis call failed since the key was read, and
// no cached entry is past its expiry. Otherwise it reads Redis (at most
// OpTimeout). When Redis cannot be reached, Lookup returns the cached
// entries, stale and possibly expired ("stale but working"), and fails with
// [ErrUnavailable] only for a key it never read; Register and Deregister
// fail with ErrUnavailable, and the caller retries. The start and end of
// an outage are logged once each.
package directory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Errors returned by Directory implementations. Test for them with
// [errors.Is]: the returned errors usually wrap them with more detail.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("directory: closed")
	// ErrInvalid is returned for a malformed Registration or a TTL <= 0.
	ErrInvalid = errors.New("directory: invalid registration")
)

// Key names a topic within an exchange. The empty Exchange is the default
// exchange. Key is comparable and can be used as a map key.
type Key struct {
	Exchange string
	Topic    string
}

// String returns "exchange/topic", with the empty (default) exchange shown as
// "(default)". It is meant for logs and error messages, not as a storage key.
func (k Key) String() string {
	ex := k.Exchange
	if ex == "" {
		ex = "(default)"
	}
	return ex + "/" + k.Topic
}

// Node is how other nodes reach one node's proxy. A port of 0 means the node
// does not offer that kind of socket; CallPort is always required.
type Node struct {
	Host       string // IP or hostname, e.g. "127.0.0.1" or "::1"
	CallPort   int    // request/reply
	FanoutPort int    // publish to every server of a topic
	NotifyPort int    // notifications
	CastPort   int    // one-way message to one server
	// CurveKey is the node's CURVE public key (Z85, 40 characters) when its
	// ports accept only CURVE clients; "" when they take plaintext. Clients
	// take it as the server key of every socket they connect to the node.
	CurveKey string
}

// endpoint formats a ZeroMQ TCP endpoint; net.JoinHostPort puts IPv6 hosts
// in brackets ("tcp://[::1]:9501"). Port 0 (unused) yields "".
func (n Node) endpoint(port int) string {
	if port == 0 {
		return ""
	}
	return "tcp://" + net.JoinHostPort(n.Host, strconv.Itoa(port))
}

// CallEndpoint returns the ZeroMQ endpoint of the call socket,
// e.g. "tcp://127.0.0.1:9501".
func (n Node) CallEndpoint() string { return n.endpoint(n.CallPort) }

// FanoutEndpoint returns the endpoint of the fanout socket, or "" if unused.
func (n Node) FanoutEndpoint() string { return n.endpoint(n.FanoutPort) }

// NotifyEndpoint returns the endpoint of the notify socket, or "" if unused.
func (n Node) NotifyEndpoint() string { return n.endpoint(n.NotifyPort) }

// CastEndpoint returns the endpoint of the cast socket, or "" if unused.
func (n Node) CastEndpoint() string { return n.endpoint(n.CastPort) }

// ID returns "host:callport" (IPv6 hosts in brackets), a stable identifier
// for the node: two nodes cannot listen on the same call address.
func (n Node) ID() string { return net.JoinHostPort(n.Host, strconv.Itoa(n.CallPort)) }

// Registration is one server of a topic on one node.
type Registration struct {
	Key
	Server string // server name, unique within the Key; required
	Node   Node
	// Methods are the method names the server offers, sorted: the one
	// published list that tools (zmqmsg servers, a fanout's check) read.
	// nil means not published (a notification listener, or an older
	// node), which is not the same as none.
	Methods []string
}

// Equal reports whether r and o are the same registration: the same Key,
// Server, Node and Methods.
func (r Registration) Equal(o Registration) bool {
	return r.Key == o.Key && r.Server == o.Server && r.Node == o.Node && slices.Equal(r.Methods, o.Methods)
}

// Validate reports whether r can be registered: Topic, Server and Node.Host
// must be non-empty, CallPort must be in 1..65535 and the other ports either
// 0 (unused) or in 1..65535. The error wraps ErrInvalid and says what is wrong.
func (r Registration) Validate() error {
	switch {
	case r.Topic == "":
		return fmt.Errorf("%w: empty topic", ErrInvalid)
	case r.Server == "":
		return fmt.Errorf("%w: empty server name", ErrInvalid)
	case r.Node.Host == "":
		return fmt.Errorf("%w: empty host", ErrInvalid)
	case r.Node.CallPort < 1 || r.Node.CallPort > 65535:
		return fmt.Errorf("%w: call port %d not in 1..65535", ErrInvalid, r.Node.CallPort)
	}
	for _, p := range []struct {
		name string
		port int
	}{
		{"fanout", r.Node.FanoutPort},
		{"notify", r.Node.NotifyPort},
		{"cast", r.Node.CastPort},
	} {
		if p.port < 0 || p.port > 65535 {
			return fmt.Errorf("%w: %s port %d not 0 or in 1..65535", ErrInvalid, p.name, p.port)
		}
	}
	return nil
}

// Entry is a live registration as returned by Lookup.
type Entry struct {
	Registration
	Expires time.Time // when the entry disappears unless refreshed
}

// Directory maps topics to the servers that handle them. A server is
// identified by its Key and Server name: registering the same pair again
// refreshes it (and moves it, if the Node changed).
//
// Implementations are safe for concurrent use. Every method taking a context
// returns ctx.Err() without doing anything if ctx is already done.
type Directory interface {
	// Register adds or refreshes r; it expires ttl after the call unless
	// refreshed. ttl must be > 0. Implementations may round ttl up to
	// their storage's resolution (e.g. milliseconds).
	Register(ctx context.Context, r Registration, ttl time.Duration) error

	// Deregister removes r at once (no error if absent). Only an entry
	// with r's Key, Server and Node is removed, so a stale process cannot
	// remove the entry of a replacement that registered on another Node.
	Deregister(ctx context.Context, r Registration) error

	// Lookup returns the live entries of k, sorted by (Node.ID(), Server)
	// so that results are deterministic. No entries is an empty slice and
	// a nil error.
	Lookup(ctx context.Context, k Key) ([]Entry, error)

	// Watch returns a channel that receives a value whenever the set of
	// live entries of k may have changed (a new server, a deregistration,
	// an expiry), and a stop func that releases it. Signals are coalesced:
	// the channel has capacity 1 and is never blocked on, so after a
	// signal call Lookup to see the current state. stop is idempotent.
	// The channel is never closed, not even by stop or Close.
	Watch(k Key) (<-chan struct{}, func())

	// Close releases resources; later calls fail with ErrClosed.
	// Idempotent.
	Close() error
}

// Lister is implemented by directories that can enumerate everything they
// hold, for tools such as the CLI's "servers" command. [Memory] and [Redis]
// implement it.
type Lister interface {
	// List returns every live entry of every key, sorted by (Exchange,
	// Topic, Node.ID(), Server). It returns ctx.Err() if ctx is already
	// done and ErrClosed after Close.
	List(ctx context.Context) ([]Entry, error)
}

// Versioner is implemented by directories that can tell cheaply whether a
// key's entries changed, so that a client may keep Lookup's result and
// read it again only when needed. [Memory] and [Redis] implement it.
type Versioner interface {
	// Version returns k's version. After a change of k's live entries
	// (a new, moved or removed server, an expiry), Version never again
	// returns a number it returned before the change; it may also return
	// a new number without a change. So a Lookup made after Version
	// returned v is current as long as Version still returns v. Version
	// answers like Lookup: from the same cache when Lookup would, with
	// ctx.Err() if ctx is done and ErrClosed after Close. Callers ask it
	// for every message, so it must answer from memory when it can and
	// bound any remote read itself.
	Version(ctx context.Context, k Key) (uint64, error)
}

// sortEntries sorts es by (Exchange, Topic, Node.ID(), Server), computing
// each Node.ID() once.
func sortEntries(es []Entry) {
	type keyed struct {
		id string
		e  Entry
	}
	ks := make([]keyed, len(es))
	for i, e := range es {
		ks[i] = keyed{e.Node.ID(), e}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		return cmp.Or(
			strings.Compare(a.e.Exchange, b.e.Exchange),
			strings.Compare(a.e.Topic, b.e.Topic),
			strings.Compare(a.id, b.id),
			strings.Compare(a.e.Server, b.e.Server),
		)
	})
	for i, k := range ks {
		es[i] = k.e
	}
}
