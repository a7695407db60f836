package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/reply"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// Target addresses a topic's servers.
type Target struct {
	Exchange, Topic, Server string
}

func (t Target) key() directory.Key { return directory.Key{Exchange: t.Exchange, Topic: t.Topic} }

// Validate checks t.
func (t Target) Validate() error {
	switch {
	case t.Topic == "":
		return fmt.Errorf("%w: empty topic", ErrInvalidTarget)
	case len(t.Exchange) > envelope.MaxStringLen, len(t.Topic) > envelope.MaxStringLen, len(t.Server) > envelope.MaxStringLen:
		return fmt.Errorf("%w: a field is over %d bytes", ErrInvalidTarget, envelope.MaxStringLen)
	}
	return nil
}

// Call sends a CALL to target and waits for its reply: until the reply
// arrives, ctx ends, or the deadline (ctx's, or now+CallTimeout) passes.
// The returned message is a KindReply; every failure is an error:
// ErrTimeout, ctx.Err() on cancellation, ErrNoServers, *RemoteError,
// ErrOverloaded, ErrTooLarge, ErrClosed.
func (e *Engine) Call(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte) (envelope.Message, error) {
	waitUntil, err := e.admit(ctx, t, payload)
	if err != nil {
		return envelope.Message{}, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(e.cfg.CallTimeout)
		waitUntil = minTime(waitUntil, deadline)
	}
	m, err := e.call(ctx, t, method, flags, payload, deadline, waitUntil)
	if err != nil {
		e.callErrors.Add(1)
		if errors.Is(err, ErrTimeout) {
			e.timeouts.Add(1)
		}
	}
	return m, err
}

// call sends the call to a server of t. A call that was never sent, because
// its node could not be connected to (ErrUnavailable), goes to the next
// server of the topic on another node; one for a named server fails.
func (e *Engine) call(ctx context.Context, t Target, method string, flags envelope.Flags, payload []byte, deadline, waitUntil time.Time) (envelope.Message, error) {
	req := envelope.Message{
		Kind:     envelope.KindCall,
		Flags:    flags,
		ID:       envelope.NewID(),
		Deadline: deadline.UnixNano(),
		Exchange: t.Exchange,
		Topic:    t.Topic,
		Server:   t.Server,
		Method:   method,
	}
	req.Payload = payload
	body, err := envelope.Encode(&req)
	if err != nil {
		return envelope.Message{}, fmt.Errorf("zmqmsg: encode call: %w", err)
	}
	var tried []string
	for {
		entry, err := e.res.pickAvoiding(ctx, t.key(), t.Server, waitUntil, deadline, tried)
		if err != nil {
			return envelope.Message{}, e.ctxError(ctx, err)
		}
		m, err := e.callOnce(ctx, &req, body, entry, deadline, len(tried) == 0)
		if !errors.Is(err, ErrUnavailable) || t.Server != "" || ctx.Err() != nil {
			return m, err
		}
		tried = append(tried, entry.nodeID)
		if !e.res.hasAlternative(t.key(), tried) {
			return m, err
		}
		e.rerouted.Add(1)
	}
}

// callOnce sends the encoded call req to entry's node and waits for its
// answer; first counts the call in Stats.Calls once it is submitted.
func (e *Engine) callOnce(ctx context.Context, req *envelope.Message, body []byte, entry route, deadline time.Time, first bool) (envelope.Message, error) {
	d, err := e.dealer(ctx, entry)
	if err != nil {
		return envelope.Message{}, e.ctxError(ctx, err)
	}
	// Register before sending: the reply can never beat the registration.
	ch, err := e.table.Register(req.ID, entry.nodeID)
	if err != nil {
		return envelope.Message{}, e.ctxError(ctx, fmt.Errorf("zmqmsg: register call: %w", err))
	}
	if err := d.Submit(ctx, &socket.Request{ID: req.ID, Body: body}); err != nil {
		e.table.Forget(req.ID)
		return envelope.Message{}, e.ctxError(ctx, err)
	}
	if first {
		e.calls.Add(1)
	}
	// ctx's own deadline is the call's deadline: no timer of our own then.
	var expired <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case res := <-ch:
		if res.Err != nil {
			return envelope.Message{}, e.ctxError(ctx, res.Err)
		}
		return e.result(res.Msg, entry)
	case <-ctx.Done():
		e.table.Forget(req.ID)
		return envelope.Message{}, e.ctxError(ctx, ctx.Err())
	case <-expired:
		e.table.Forget(req.ID)
		return envelope.Message{}, ErrTimeout
	}
}

// admit checks what every send checks before it does anything, and returns
// until when to wait for a first server of the target (Config.WaitForServers,
// never past ctx's deadline). A ctx that has already ended sends nothing.
func (e *Engine) admit(ctx context.Context, t Target, payload []byte) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	if e.closed.Load() {
		return time.Time{}, ErrClosed
	}
	if err := t.Validate(); err != nil {
		return time.Time{}, err
	}
	if max := e.cfg.MaxMessageSize; max > 0 && len(payload) > max {
		return time.Time{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), max)
	}
	waitUntil := time.Now().Add(e.cfg.WaitForServers)
	if d, ok := ctx.Deadline(); ok {
		waitUntil = minTime(waitUntil, d)
	}
	return waitUntil, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// ctxError maps internal errors to the public ones.
func (e *Engine) ctxError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return ErrTimeout
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, reply.ErrClosed), errors.Is(err, socket.ErrSocketStopped):
		return ErrClosed
	case errors.Is(err, socket.ErrUnavailable):
		if e.closed.Load() {
			return ErrClosed
		}
		return ErrUnavailable
	}
	return err
}

// result turns a reply message into the call's outcome.
func (e *Engine) result(m envelope.Message, entry route) (envelope.Message, error) {
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
