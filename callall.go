package zmqmsg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// ServerReply is one server's answer to a scatter-gather call (CallAll):
// its reply, or why there is none.
type ServerReply struct {
	Server string // the server's name
	Node   string // its node ("host:port" of the call port)
	// Err is nil for a reply (Decode it); a *RemoteError for the handler's
	// error; ErrOverloaded, ErrNoServers or ErrTooLarge for the node's
	// refusal; an error wrapping ErrUnreached (and the cause: ErrNodeDown,
	// ErrUnavailable) when the server's node could not be reached; one
	// wrapping ErrTimeout when the deadline or the stall timer ended the
	// wait; one wrapping context.Canceled when the gathering stopped first
	// (MaxReplies, the callback said stop, or the caller's ctx was
	// cancelled); any other error of Call.
	Err     error
	Elapsed time.Duration // from the start of CallAll to this answer

	msg   envelope.Message
	codec Codec
}

// Decode decodes the reply into v (a pointer), as Call does.
func (r ServerReply) Decode(v any) error {
	if r.Err != nil {
		return r.Err
	}
	return decodeReply(r.codec, &r.msg, v)
}

// CallAllOption tunes a scatter-gather call.
type CallAllOption func(*callAllOptions)

type callAllOptions struct {
	maxReplies int
	stall      time.Duration
}

// MaxReplies stops the gathering once n servers have answered (a reply, a
// handler's error, or their node's refusal); n ≤ 0 means every server.
func MaxReplies(n int) CallAllOption { return func(o *callAllOptions) { o.maxReplies = n } }

// StallAfter stops the gathering when no server has answered for d since
// the last answer (counted from the first one; before it, only the
// deadline ends the wait). The servers still silent get ErrTimeout.
func StallAfter(d time.Duration) CallAllOption { return func(o *callAllOptions) { o.stall = d } }

// CallAll calls method on every server of the client's target (every one
// the directory lists, each by name, through the interceptors) and returns
// their answers: in the order they came, then the servers that did not
// answer, each with its error (see ServerReply.Err). Partial results are
// results: the error is non-nil only when no call could start (no server,
// ErrDirectoryUnavailable, a bad target or arguments, ctx already done).
// It ends at the first of: every server answered, MaxReplies, the stall
// timer (StallAfter), or the deadline (ctx's, or Config.CallTimeout).
func (c *Client) CallAll(ctx context.Context, method string, args any, opts ...CallAllOption) ([]ServerReply, error) {
	var out []ServerReply
	err := c.CallAllFunc(ctx, method, args, func(r ServerReply) bool {
		out = append(out, r)
		return true
	}, opts...)
	return out, err
}

// CallAllFunc is CallAll as a stream: fn runs in the caller's goroutine for
// each answer as it arrives, then for each server that did not answer; it
// returns false to stop gathering (the calls still out are cancelled and
// reported to fn with context.Canceled).
func (c *Client) CallAllFunc(ctx context.Context, method string, args any, fn func(ServerReply) bool, opts ...CallAllOption) error {
	var o callAllOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.target.Fanout {
		return fmt.Errorf("%w: CallAll on a fanout target (it calls every server already)", ErrInvalidTarget)
	}
	if fn == nil {
		return fmt.Errorf("%w: nil callback", ErrInvalidConfig)
	}
	servers, err := c.t.e.Servers(ctx, c.target)
	if err != nil {
		return err
	}
	start := time.Now()
	var cancel context.CancelFunc
	if _, ok := ctx.Deadline(); ok {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeout(ctx, c.t.e.Config().CallTimeout)
	}
	defer cancel()

	type result struct {
		i   int
		msg envelope.Message
		err error
	}
	results := make(chan result, len(servers))
	for i, s := range servers {
		target := c.target
		target.Server = s.Server
		go func() {
			var raw rawReply
			err := c.t.send(ctx, &CallInfo{Pattern: PatternCall, Target: target, Method: method}, args, &raw)
			results <- result{i, raw.msg, err}
		}()
	}

	answered := make([]bool, len(servers))
	codec := c.t.replyCodec(method)
	reply := func(i int, msg envelope.Message, err error) ServerReply {
		answered[i] = true
		return ServerReply{Server: servers[i].Server, Node: servers[i].Node, Err: err, Elapsed: time.Since(start), msg: msg, codec: codec}
	}
	var stall *time.Timer
	var stalled <-chan time.Time
	defer func() {
		if stall != nil {
			stall.Stop()
		}
	}()
	var why error // why the gathering stopped early: a timeout or a cancellation
	pending, got := len(servers), 0
gather:
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			err := r.err
			if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNodeDown) {
				err = fmt.Errorf("%w: server %q: %w", ErrUnreached, servers[r.i].Server, err)
			}
			if !fn(reply(r.i, r.msg, err)) {
				why = fmt.Errorf("%w: the caller stopped gathering", context.Canceled)
				break gather
			}
			if err == nil || isAnswer(err) {
				got++
				if o.maxReplies > 0 && got >= o.maxReplies {
					why = fmt.Errorf("%w: MaxReplies (%d) reached", context.Canceled, o.maxReplies)
					break gather
				}
				if o.stall > 0 {
					if stall == nil {
						stall = time.NewTimer(o.stall)
						stalled = stall.C
					} else {
						stall.Reset(o.stall)
					}
				}
			}
		case <-stalled:
			why = fmt.Errorf("%w: stalled: no answer for %v after the last", ErrTimeout, o.stall)
			break gather
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why = fmt.Errorf("%w: the deadline passed", ErrTimeout)
			} else {
				why = fmt.Errorf("%w: the caller cancelled", context.Canceled)
			}
			break gather
		}
	}
	cancel()
	var late []ServerReply // answers that beat the cancellation still count
	for ; pending > 0; pending-- {
		r := <-results // cancelled: each returns promptly
		if r.err == nil || isAnswer(r.err) {
			late = append(late, reply(r.i, r.msg, r.err))
		}
	}
	for _, r := range late {
		fn(r)
	}
	for i := range servers {
		if !answered[i] {
			fn(reply(i, envelope.Message{}, why))
		}
	}
	return nil
}

// isAnswer reports whether err came from the server's node answering: the
// handler's error, or the node's refusal (overloaded, no such server, too
// large).
func isAnswer(err error) bool {
	var re *RemoteError
	return errors.As(err, &re) || errors.Is(err, ErrOverloaded) || errors.Is(err, ErrNoServers) || errors.Is(err, ErrTooLarge)
}

// rawReply receives a reply message undecoded (CallAll decodes later).
type rawReply struct{ msg envelope.Message }
