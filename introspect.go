package zmqmsg

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/zmqmsg/zmqmsg/engine"
)

// The built-in methods every server answers without user code
// (docs/design.md §21): a CALL to one of them reaches no handler and no
// server interceptor. Their answers are JSON whatever Config.Codec, and
// Call, CallAll and ServerReply.Decode decode them as JSON. A user method
// may not start with ReservedMethodPrefix (Serve fails with
// ErrReservedMethod). A server older than introspection answers them with
// a *RemoteError matching ErrNoSuchMethod.
const (
	ReservedMethodPrefix = engine.ReservedMethodPrefix
	PingMethod           = engine.PingMethod  // answered with a Ping
	InfoMethod           = engine.InfoMethod  // answered with a ServiceInfo
	StatsMethod          = engine.StatsMethod // answered with a ServerStats
)

// ErrReservedMethod: Serve was given an endpoint whose name starts with
// ReservedMethodPrefix.
var ErrReservedMethod = engine.ErrReservedMethod

type (
	// Ping is a server's answer to PingMethod: its name, node, zmqmsg
	// version, start time and uptime.
	Ping = engine.Ping
	// ServiceInfo is a server's answer to InfoMethod: a Ping, its exchange
	// and topic, the methods it offers, the metadata given to Serve
	// (ServeMetadata) and the envelope version it speaks.
	ServiceInfo = engine.Info
	// ServerStats is a server's answer to StatsMethod: a Ping and a record
	// per method it offers.
	ServerStats = engine.ServerStats
	// MethodStats is one method's record on one server: requests, errors,
	// handlers running, processing time, the last error and when.
	MethodStats = engine.MethodStats
)

// ServeMetadata sets what the server answers to InfoMethod besides its
// methods: a description, a version, whatever a user of Discover needs.
// The map is copied.
func ServeMetadata(m map[string]string) ServeOption {
	return func(o *serveOptions) {
		o.meta = make(map[string]string, len(m))
		for k, v := range m {
			o.meta[k] = v
		}
	}
}

// Info returns what the server answers to InfoMethod.
func (s *Server) Info() ServiceInfo { return s.s.Info() }

// Stats returns the server's per-method records, as StatsMethod answers.
func (s *Server) Stats() ServerStats { return s.s.Stats() }

// ServerStats returns the per-method records of every server and listener
// this Transport runs, as StatsMethod answers them, sorted by exchange,
// topic and server: what a metrics exporter reads.
func (t *Transport) ServerStats() []ServerStats { return t.e.ServerStats() }

// Ping asks one server of the client's target (the named one, or the next
// in the pick) for its identity and uptime: a CALL that no handler runs.
func (c *Client) Ping(ctx context.Context) (Ping, error) {
	var p Ping
	err := c.Call(ctx, PingMethod, nil, &p)
	return p, err
}

// Info asks one server of the client's target what it offers.
func (c *Client) Info(ctx context.Context) (ServiceInfo, error) {
	var in ServiceInfo
	err := c.Call(ctx, InfoMethod, nil, &in)
	return in, err
}

// ServerStats asks one server of the client's target for its per-method
// records.
func (c *Client) ServerStats(ctx context.Context) (ServerStats, error) {
	var st ServerStats
	err := c.Call(ctx, StatsMethod, nil, &st)
	return st, err
}

// Discovered is one server that Discover asked: what it answered to
// InfoMethod, or why there is no answer.
type Discovered struct {
	Topic  string
	Server string
	Node   string
	Info   ServiceInfo // valid when Err is nil
	Err    error       // as ServerReply.Err
}

// Discover asks every server of target's topic, or of every topic of
// target.Exchange when target.Topic is empty, what it offers: Gather of
// InfoMethod. The answers come sorted by topic and server; the servers
// that did not answer are in it with their error. The error is Gather's;
// for a named topic, none is returned with it.
func (t *Transport) Discover(ctx context.Context, target Target, opts ...CallAllOption) ([]Discovered, error) {
	var found []Discovered
	err := t.Gather(ctx, target, InfoMethod, nil, func(topic string, r ServerReply) {
		d := Discovered{Topic: topic, Server: r.Server, Node: r.Node, Err: r.Err}
		if d.Err == nil {
			d.Err = r.Decode(&d.Info)
		}
		found = append(found, d)
	}, opts...)
	if target.Topic != "" && err != nil {
		return nil, err
	}
	slices.SortFunc(found, func(a, b Discovered) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Server, b.Server))
	})
	return found, err
}

// Gather is CallAllFunc (with opts) over every server of target's topic,
// or, when target.Topic is empty, of every topic of target.Exchange that
// the directory lists, each topic at once: fn gets each answer with its
// topic, one at a time, as they come. The error says why a topic could not
// be asked: for a named topic, CallAllFunc's; for every topic, the
// directory's listing, or the first topic that failed other than by having
// no servers (a topic whose servers left since the listing is skipped,
// after Config.WaitForServers); the answers of the others came all the
// same.
func (t *Transport) Gather(ctx context.Context, target Target, method string, args any, fn func(topic string, r ServerReply), opts ...CallAllOption) error {
	if target.Fanout {
		return fmt.Errorf("%w: Gather takes the topic's target, without Fanout", ErrInvalidTarget)
	}
	topics := []string{target.Topic}
	if target.Topic == "" {
		var err error
		if topics, err = t.e.Topics(ctx, target.Exchange); err != nil {
			return err
		}
	}
	var (
		mu   sync.Mutex
		errs = make([]error, len(topics))
		wg   sync.WaitGroup
	)
	for i, topic := range topics {
		tg := target
		tg.Topic = topic
		wg.Go(func() {
			errs[i] = t.Client(tg).CallAllFunc(ctx, method, args, func(r ServerReply) bool {
				mu.Lock()
				fn(topic, r)
				mu.Unlock()
				return true
			}, opts...)
		})
	}
	wg.Wait()
	if target.Topic != "" {
		return errs[0]
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, ErrNoServers) {
			return err
		}
	}
	return nil
}
