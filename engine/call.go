package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/reply"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// Target addresses the servers of a topic.
type Target struct {
	Exchange string // optional namespace; "" is the default exchange
	Topic    string // required
	Server   string // optional: one named server of the topic; "" = any server
	Fanout   bool   // Cast reaches every server of the topic (Call refuses a fanout target)
}

func (t Target) key() directory.Key { return directory.Key{Exchange: t.Exchange, Topic: t.Topic} }

// Validate checks t.
func (t Target) Validate() error {
	switch {
	case t.Topic == "":
		return fmt.Errorf("%w: empty topic", ErrInvalidTarget)
	case len(t.Exchange) > envelope.MaxStringLen, len(t.Topic) > envelope.MaxStringLen, len(t.Server) > envelope.MaxStringLen:
		return fmt.Errorf("%w: a field is over %d bytes", ErrInvalidTarget, envelope.MaxStringLen)
	case t.Fanout && t.Server != "":
		return fmt.Errorf("%w: a fanout target names no server", ErrInvalidTarget)
	}
	return nil
}

// message is a request of kind to t's topic: to server ("" for any),
// with id, and the metadata ctx carries (WithMeta).
func (t Target) message(ctx context.Context, kind envelope.Kind, id envelope.ID, server, method string, flags envelope.Flags, payload []byte) envelope.Message {
	return envelope.Message{Kind: kind, Flags: flags, ID: id, Exchange: t.Exchange, Topic: t.Topic, Server: server, Method: method, Meta: MetaOf(ctx), Payload: payload}
}

// caller sends CALLs: it picks a server, hands the encoded request to the
// node's DEALER and waits on the reply table for the answer.
type caller struct {
	*peers
	calls, errors, timeouts atomic.Uint64
	retried                 atomic.Uint64 // calls sent again after a retryable failure (RetryPolicy)
	cancels                 atomic.Uint64 // CANCELs sent for calls whose ctx was cancelled
	lost                    atomic.Uint64 // monitored calls whose server went silent (ErrServerLost)
	heartbeats              atomic.Uint64 // IN_PROGRESS ACKs received for monitored calls
}

// RetryPolicy retries the calls of idempotent methods on another server
// (the shape of gRPC's retry policy, gRFC A6): after ErrNodeDown or
// ErrServerLost (the call may have run) or ErrOverloaded (it did not),
// within the call's deadline.
type RetryPolicy struct {
	MaxAttempts    int           // attempts in all, the first included; < 2: no retry
	InitialBackoff time.Duration // the longest wait before the second attempt (default 10ms)
	MaxBackoff     time.Duration // the cap of the waits (default 1s)
	Multiplier     float64       // the waits' growth per attempt (default 2)
	// Methods are the idempotent methods, the only ones retried; "*" is
	// every method.
	Methods []string
}

// retries reports whether a call of method that failed with err after
// attempt attempts goes again, and how long to wait first: a random time
// up to the attempt's backoff (full jitter).
func (p *RetryPolicy) retries(method string, err error, attempt int) (time.Duration, bool) {
	if p == nil || attempt >= p.MaxAttempts || !(errors.Is(err, ErrNodeDown) || errors.Is(err, ErrServerLost) || errors.Is(err, ErrOverloaded)) {
		return 0, false
	}
	if !slices.Contains(p.Methods, method) && !slices.Contains(p.Methods, "*") {
		return 0, false
	}
	initial, maxB, mult := p.InitialBackoff, p.MaxBackoff, p.Multiplier
	if initial <= 0 {
		initial = 10 * time.Millisecond
	}
	if maxB <= 0 {
		maxB = time.Second
	}
	if mult < 1 {
		mult = 2
	}
	b := float64(initial) * math.Pow(mult, float64(attempt-1))
	b = math.Min(b, float64(maxB))
	return time.Duration(rand.Int64N(int64(b) + 1)), true
}

// CallOptions are a client's choices for its calls.
type CallOptions struct {
	Retry            *RetryPolicy // nil: no retry
	LeastOutstanding bool         // pick the server with the fewest calls waiting, not the next in turn
	// MonitorEvery > 0 asks the server for a heartbeat every interval
	// while the handler runs (at least MinMonitor); the call fails with
	// ErrServerLost after MonitorMisses intervals without one.
	MonitorEvery time.Duration
}

// Call sends a CALL to t and waits for its reply: until the reply arrives,
// ctx ends, or the deadline (ctx's, or now+CallTimeout) passes. The
// returned message is a KindReply; every failure is an error: ErrTimeout,
// ctx.Err() on cancellation, ErrNoServers, *RemoteError, ErrOverloaded,
// ErrTooLarge, ErrUnavailable, *NodeDownError, ErrClosed.
func (c *caller) Call(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte, o CallOptions) (envelope.Message, error) {
	if t.Fanout {
		return envelope.Message{}, fmt.Errorf("%w: Call on a fanout target", ErrInvalidTarget)
	}
	waitUntil, err := c.admit(ctx, t, payload)
	if err != nil {
		return envelope.Message{}, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(c.cfg.CallTimeout)
		waitUntil = minTime(waitUntil, deadline)
	}
	var avoid []string
	for attempt := 1; ; attempt++ {
		m, node, err := c.call(ctx, t, method, flags, payload, deadline, waitUntil, avoid, o)
		wait, again := o.Retry.retries(method, err, attempt)
		if again && t.Server == "" && time.Now().Add(wait).Before(deadline) && c.backoff(ctx, wait) {
			c.retried.Add(1)
			avoid = append(avoid, node)
			continue
		}
		if err != nil {
			c.errors.Add(1)
			if errors.Is(err, ErrTimeout) {
				c.timeouts.Add(1)
			}
		}
		return m, err
	}
}

// backoff waits d, or until ctx ends (false).
func (c *caller) backoff(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// call sends the call to a server of t (not on a node in avoid if another
// serves t) and returns its answer and the node it went to. A call that
// was never sent, because its node could not be connected to
// (ErrUnavailable), goes to the next server of the topic on another node;
// one for a named server fails.
func (c *caller) call(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte, deadline, waitUntil time.Time, avoid []string, o CallOptions) (envelope.Message, string, error) {
	req := t.message(ctx, envelope.KindCall, envelope.NewID(), t.Server, method, flags, payload)
	req.Deadline = deadline.UnixNano()
	every := o.MonitorEvery
	if every > 0 {
		every = min(max(every, MinMonitor), MaxMonitor)
		req.Meta = monitorMeta(req.Meta, every)
	}
	least := o.LeastOutstanding
	named := least && t.Server == "" // the request names the server picked, encoded after the pick
	var body []byte
	var err error
	if !named {
		if body, err = envelope.Encode(&req); err != nil {
			return envelope.Message{}, "", fmt.Errorf("zmqmsg: encode call: %w", err)
		}
	}
	tried := avoid
	for {
		entry, err := c.res.pickAvoiding(ctx, t.key(), t.Server, waitUntil, deadline, tried, least)
		if err != nil {
			return envelope.Message{}, "", c.ctxError(err)
		}
		if named {
			// The node's proxy would otherwise choose among its servers
			// itself.
			req.Server = entry.Server
			if body, err = envelope.Encode(&req); err != nil {
				return envelope.Message{}, "", fmt.Errorf("zmqmsg: encode call: %w", err)
			}
		}
		counter := &c.calls // the first attempt counts the call once submitted
		if len(tried) > 0 {
			counter = nil // a reroute, or a retry (counted in CallRetries)
		}
		entry.begin()
		m, err := c.once(ctx, &req, body, entry, deadline, counter, every)
		entry.end()
		if !errors.Is(err, ErrUnavailable) || t.Server != "" || ctx.Err() != nil {
			return m, entry.nodeID, err
		}
		tried = append(tried[:len(tried):len(tried)], entry.nodeID)
		if !c.res.hasAlternative(t.key(), tried) {
			return m, entry.nodeID, err
		}
		c.rerouted.Add(1)
	}
}

// once sends the encoded request req to entry's node and waits for its
// answer; submitted, if not nil, counts it once the socket has it. With
// every > 0, the server's heartbeats (IN_PROGRESS) arm and re-arm a
// silence timer: MonitorMisses intervals without one end the call.
func (c *caller) once(ctx context.Context, req *envelope.Message, body []byte, entry route, deadline time.Time, submitted *atomic.Uint64, every time.Duration) (envelope.Message, error) {
	d, err := c.dealer(ctx, entry)
	if err != nil {
		return envelope.Message{}, c.ctxError(err)
	}
	// Register before sending: the reply can never beat the registration.
	call, err := c.table.RegisterCall(req.ID, entry.nodeID)
	if err != nil {
		return envelope.Message{}, c.ctxError(fmt.Errorf("zmqmsg: register call: %w", err))
	}
	if err := d.Submit(ctx, &socket.Request{ID: req.ID, Body: body}); err != nil {
		c.table.Forget(req.ID)
		return envelope.Message{}, c.ctxError(err)
	}
	if submitted != nil {
		submitted.Add(1)
	}
	// ctx's own deadline is the call's deadline: no timer of our own then.
	var expired <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		expired = timer.C
	}
	var silence *time.Timer
	var silent <-chan time.Time
	defer func() {
		if silence != nil {
			silence.Stop()
		}
	}()
	for {
		var res reply.Result
		select {
		case res = <-call.C():
		case <-ctx.Done():
			c.table.Forget(req.ID)
			if errors.Is(ctx.Err(), context.Canceled) {
				c.sendCancel(d, req, entry)
			}
			return envelope.Message{}, c.ctxError(ctx.Err())
		case <-expired:
			c.table.Forget(req.ID)
			return envelope.Message{}, ErrTimeout
		case <-silent:
			select {
			case res = <-call.C(): // it came with the timer: it wins
			default:
				c.table.Forget(req.ID)
				c.lost.Add(1)
				c.sendCancel(d, req, entry) // if it is alive after all, its handler stops
				return envelope.Message{}, fmt.Errorf("%w: no heartbeat for %v from the server of %s on node %s (the call may have run)",
					ErrServerLost, MonitorMisses*every, req.Topic, entry.nodeID)
			}
		}
		if res.Err == nil && res.Msg.Kind == envelope.KindAck && res.Msg.Code == envelope.CodeInProgress {
			if every > 0 { // a heartbeat: the server is alive
				c.heartbeats.Add(1)
				if silence == nil {
					silence = time.NewTimer(MonitorMisses * every)
					silent = silence.C
				} else {
					silence.Reset(MonitorMisses * every)
				}
			}
			continue
		}
		c.table.Release(call) // the final result: nothing sends on it any more
		if res.Err != nil {
			return envelope.Message{}, c.ctxError(res.Err)
		}
		return result(res.Msg, entry)
	}
}

// cancelSubmit bounds how long a CANCEL waits for room in the dealer's
// command queue: it is best effort.
const cancelSubmit = 100 * time.Millisecond

// sendCancel tells the server running req that its caller gave up: a
// CANCEL, best effort (no answer, no retry; counted when queued).
func (c *caller) sendCancel(d *socket.Handle[socket.DealerCmd], req *envelope.Message, entry route) {
	m := envelope.Message{Kind: envelope.KindCancel, ID: req.ID, Exchange: req.Exchange, Topic: req.Topic, Server: entry.Server}
	body, err := envelope.Encode(&m)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cancelSubmit)
	defer cancel()
	if d.Submit(ctx, &socket.Request{ID: req.ID, Body: body}) == nil {
		c.cancels.Add(1)
	}
}

// result turns an answer into the call's outcome.
func result(m envelope.Message, entry route) (envelope.Message, error) {
	if m.Kind == envelope.KindReply {
		return m, nil
	}
	switch m.Code {
	case envelope.CodeNoServers:
		// The directory listed this node, but it no longer serves the target.
		return envelope.Message{}, fmt.Errorf("%w: node %s: %s", ErrNoServers, entry.nodeID, m.ErrMsg)
	case envelope.CodeOverloaded:
		return envelope.Message{}, fmt.Errorf("%w: %s", ErrOverloaded, m.ErrMsg)
	case envelope.CodeTooLarge:
		return envelope.Message{}, fmt.Errorf("%w: %s", ErrTooLarge, m.ErrMsg)
	case envelope.CodeExpired:
		return envelope.Message{}, ErrTimeout
	case envelope.CodeShuttingDown:
		return envelope.Message{}, fmt.Errorf("%w: server stopping: %s", ErrUnavailable, m.ErrMsg)
	case envelope.CodeServerLost:
		// The daemon lost the process that had the call: it may have run.
		return envelope.Message{}, &NodeDownError{Node: entry.nodeID, Cause: m.ErrMsg}
	}
	return envelope.Message{}, &RemoteError{Type: m.ErrType, Message: m.ErrMsg}
}

func (c *caller) addStats(st *Stats) {
	st.Calls, st.CallErrors, st.Timeouts = c.calls.Load(), c.errors.Load(), c.timeouts.Load()
	st.CancelsSent, st.ServersLost, st.HeartbeatsReceived = c.cancels.Load(), c.lost.Load(), c.heartbeats.Load()
	st.CallRetries = c.retried.Load()
}
