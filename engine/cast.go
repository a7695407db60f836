package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// caster sends CASTs: acknowledged ones over the DEALER pipeline, each
// within its node's window of unacknowledged casts, and direct ones over
// the PUSH pipeline.
type caster struct {
	*peers
	windowMu sync.Mutex
	windows  map[string]chan struct{} // node id -> un-acked CAST slots

	casts, retries, notAcked, resent atomic.Uint64
	directFailed                     atomic.Uint64 // direct casts a PUSH socket refused
}

func (c *caster) addStats(st *Stats) {
	st.Casts, st.CastRetries, st.CastsNotAcked, st.CastsResent = c.casts.Load(), c.retries.Load(), c.notAcked.Load(), c.resent.Load()
	st.DirectCastFailed += c.directFailed.Load()
}

// Cast sends a one-way message to one server of t: the named one, or the
// next in round robin. The server is fixed before the first send and every
// retry goes to it with the same message id, so that its de-duplication
// runs the handler once.
//
// With acks on, Cast returns nil once the server has run the handler, and a
// *RemoteError if the handler failed or the server has no such method (as a
// call would: the ACK carries the failure; a resend gets it again). It waits
// for each ACK Timeout, then Timeout×Multiplier, ... and resends up to
// Retries times, then fails with ErrNotAcked. With acks off it returns once
// the message is handed to the node's socket. It also waits, bounded by ctx,
// while CastWindow casts to the same node are waiting for their ACKs.
func (c *caster) Cast(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte) error {
	waitUntil, err := c.admit(ctx, t, payload)
	if err != nil {
		return err
	}
	id := envelope.NewID()
	c.casts.Add(1)
	// A cast to a topic whose node went down before it acknowledged, or
	// that got no ACK from its server after every retry, is sent again to
	// another server of the topic (one on a node not tried yet, and not
	// down), at most maxResends times. The first server may have run it:
	// at least once. A cast that its node never had (ErrUnavailable: the
	// node could not be connected to) goes to another server too, without
	// that doubt. A cast to a named server fails with ErrNodeDown,
	// ErrNotAcked or ErrUnavailable. A cast whose server answered, even
	// with a failure (a *RemoteError), is never sent elsewhere.
	var tried []string
	var mayHaveRun error // the failure of an earlier attempt that may have been delivered
	for resends := 0; ; resends++ {
		nodeID, err := c.cast(ctx, t, id, method, flags, payload, waitUntil, tried)
		notSent := errors.Is(err, ErrUnavailable)
		if !notSent && (errors.Is(err, ErrNodeDown) || errors.Is(err, ErrNotAcked)) {
			mayHaveRun = err
		}
		retry := notSent || errors.Is(err, ErrNodeDown) || errors.Is(err, ErrNotAcked)
		if err == nil || t.Server != "" || resends == maxResends || !retry || ctx.Err() != nil || !c.res.hasAlternative(t.key(), append(tried, nodeID)) {
			if notSent && mayHaveRun != nil {
				// This attempt never left, but an earlier one may have
				// run: not "not sent".
				return mayHaveRun
			}
			return err
		}
		tried = append(tried, nodeID)
		if notSent {
			c.rerouted.Add(1)
			continue
		}
		c.resent.Add(1)
		c.rt.log.Warn("cast not acknowledged by its server; sending it to another server",
			append(envelope.LogAttrs(&envelope.Message{ID: id, Meta: MetaOf(ctx)}), "topic", t.Topic, "method", method, "err", err)...)
	}
}

// maxResends bounds how often a cast is sent to another server.
const maxResends = 3

// cast sends one cast to a server of t, on a node not in avoid if there is
// one, and returns the node it used.
func (c *caster) cast(ctx context.Context, t Target, id envelope.ID, method string, flags envelope.Flags, payload []byte, waitUntil time.Time, avoid []string) (string, error) {
	entry, err := c.res.pickAvoiding(ctx, t.key(), t.Server, waitUntil, time.Time{}, avoid, false)
	if err != nil {
		return "", c.ctxError(err)
	}
	d, err := c.dealer(ctx, entry)
	if err != nil {
		return entry.nodeID, c.ctxError(err)
	}
	m := t.message(ctx, envelope.KindCast, id, entry.Server, method, flags, payload) // retries reach the same server
	policy := c.cfg.Acks
	if policy.Disabled {
		m.Flags |= envelope.FlagNoAck
	}
	body, err := envelope.Encode(&m)
	if err != nil {
		return entry.nodeID, fmt.Errorf("zmqmsg: encode cast: %w", err)
	}
	if policy.Disabled {
		if err := d.Submit(ctx, &socket.Request{ID: m.ID, Body: body}); err != nil {
			return entry.nodeID, c.ctxError(err)
		}
		return entry.nodeID, nil
	}
	return entry.nodeID, c.castAcked(ctx, d, &m, body, entry.nodeID)
}

// castAcked sends an encoded cast until it is acknowledged, following the
// AckPolicy, within the node's window of unacknowledged casts.
func (c *caster) castAcked(ctx context.Context, d *socket.Handle[socket.DealerCmd], m *envelope.Message, body []byte, nodeID string) error {
	policy := c.cfg.Acks
	// Take a slot of the node's window of un-acknowledged casts.
	window := c.window(nodeID)
	select {
	case window <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-window }()
	bounded := false
	if _, ok := ctx.Deadline(); !ok {
		// A server that keeps answering IN_PROGRESS (a handler that never
		// returns) must not hold the caster forever.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.CallTimeout)
		defer cancel()
		bounded = true
	}

	timeout := policy.Timeout
	sent := false // an attempt went out: the server may have it
	for attempt := 0; ; {
		got, err := c.castOnce(ctx, d, m, body, nodeID, timeout)
		if err != nil && sent && errors.Is(err, ErrUnavailable) {
			// A resend never left, but an earlier copy may have run.
			return &NodeDownError{Node: nodeID, Cause: "unacknowledged, then unreachable (it may have run): " + err.Error()}
		}
		sent = true
		if err != nil {
			if bounded && errors.Is(err, context.DeadlineExceeded) {
				// Our own bound, not the caller's ctx: the server has the
				// cast (it answered) and may still finish it. Not ErrNotAcked:
				// nothing must send it elsewhere.
				return fmt.Errorf("%w: cast %s.%s to server %q on %s still unacknowledged after CallTimeout (%v); it may still run",
					ErrTimeout, m.Topic, m.Method, m.Server, nodeID, c.cfg.CallTimeout)
			}
			return err
		}
		switch got {
		case ackOK:
			return nil
		case ackInProgress:
			// The server has it and is running it: not a lost message, not
			// a retry. Ask again after the same wait; ctx bounds how long.
			continue
		}
		if attempt == policy.Resends() {
			c.notAcked.Add(1)
			c.rt.log.Warn("cast not acknowledged", append(envelope.LogAttrs(m), "topic", m.Topic, "server", m.Server, "node", nodeID,
				"method", m.Method, "attempts", attempt+1)...)
			return fmt.Errorf("%w: %s.%s to server %q on %s after %d attempts", ErrNotAcked, m.Topic, m.Method, m.Server, nodeID, attempt+1)
		}
		attempt++
		c.retries.Add(1)
		timeout = time.Duration(float64(timeout) * policy.Multiplier)
	}
}

// ackOutcome is what one attempt of a cast heard back.
type ackOutcome int

const (
	ackNone       ackOutcome = iota // no answer within the attempt's time
	ackOK                           // acknowledged: the handler has run
	ackInProgress                   // IN_PROGRESS, and no final ACK within the attempt's time
)

// castOnce sends the cast once and waits up to timeout for its ACK. An
// error ends the cast: ctx, a closed Transport, or a negative ACK.
func (c *caster) castOnce(ctx context.Context, d *socket.Handle[socket.DealerCmd], m *envelope.Message, body []byte, nodeID string, timeout time.Duration) (ackOutcome, error) {
	call, err := c.table.RegisterCall(m.ID, nodeID)
	if err != nil {
		return ackNone, c.ctxError(err)
	}
	if err := d.Submit(ctx, &socket.Request{ID: m.ID, Body: body}); err != nil {
		c.table.Forget(m.ID)
		return ackNone, c.ctxError(err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	heard := ackNone
	for {
		select {
		case res := <-call.C():
			if res.Err == nil && res.Msg.Code == envelope.CodeInProgress {
				// The server has it and runs it; the final ACK comes on the
				// same registration. Wait out this attempt's time for it.
				heard = ackInProgress
				continue
			}
			c.table.Release(call) // the final answer: nothing sends on it any more
			if res.Err != nil {
				return ackNone, c.ctxError(res.Err)
			}
			if err := ackError(&res.Msg, nodeID); err != nil {
				return ackNone, err
			}
			return ackOK, nil
		case <-timer.C:
			c.table.Forget(m.ID) // an ACK after this is counted as late
			return heard, nil
		case <-ctx.Done():
			c.table.Forget(m.ID)
			return ackNone, ctx.Err()
		}
	}
}

// ackError is how a final ACK (any code but IN_PROGRESS) ends a cast: nil
// for OK, the handler's failure as a *RemoteError (REMOTE, NO_SUCH_METHOD:
// never sent elsewhere), or the proxy's refusal. A code this version does
// not know is an error too, never a success: that is what an older caster
// makes of a code newer than itself.
func ackError(m *envelope.Message, nodeID string) error {
	switch m.Code {
	case envelope.CodeOK:
		return nil
	case envelope.CodeRemote, envelope.CodeNoSuchMethod:
		return &RemoteError{Type: m.ErrType, Message: m.ErrMsg}
	case envelope.CodeNoServers, envelope.CodeShuttingDown:
		return fmt.Errorf("%w: %s", ErrNoServers, m.ErrMsg)
	case envelope.CodeOverloaded:
		return fmt.Errorf("%w: %s", ErrOverloaded, m.ErrMsg)
	case envelope.CodeServerLost:
		return &NodeDownError{Node: nodeID, Cause: m.ErrMsg}
	}
	return fmt.Errorf("zmqmsg: cast refused: %s: %s", m.Code, m.ErrMsg)
}

// window returns the semaphore of un-acknowledged casts to one node.
func (c *caster) window(nodeID string) chan struct{} {
	c.windowMu.Lock()
	defer c.windowMu.Unlock()
	w := c.windows[nodeID]
	if w == nil {
		w = make(chan struct{}, c.cfg.CastWindow)
		c.windows[nodeID] = w
	}
	return w
}
