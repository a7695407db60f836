package proxy

import (
	"context"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// Request is one CALL handed to a local server.
type Request struct {
	// Routing are the frames before the body: the caller's identity and,
	// from a REQ peer, the empty delimiter. The reply must carry them.
	Routing [][]byte
	// Msg is the decoded request. Msg.Payload aliases the received body
	// frame, which belongs to the request.
	Msg envelope.Message
	// Ack is set by a server that answers Duplicate for a cast whose
	// handler failed: the ACK to send again, carrying that failure. Nil
	// means ACK OK.
	Ack []byte
}

// Offer is a server's answer to a request the proxy offers it.
type Offer int

const (
	// Accepted: the server queued the request; it will answer it (a CAST
	// too: its ACK follows once the handler has run).
	Accepted Offer = iota + 1
	// Full: the server's queue is full.
	Full
	// Stopping: the server is stopping and takes no new request; the proxy
	// routes the request to another server of the topic if there is one.
	Stopping
	// Duplicate: the server has already run a CAST with this message id
	// (a retry whose ACK was lost); it will not run it again, and the proxy
	// acknowledges it again: OK, or Request.Ack if the server set it.
	Duplicate
	// InProgress: the server has a CAST with this message id and its
	// handler has not finished (a retry that came before the ACK); the
	// proxy answers IN_PROGRESS, and the server's ACK follows.
	InProgress
)

// Server is a local server behind the proxy.
type Server interface {
	// Name is the server's name, unique within its topic.
	Name() string
	// Offer hands r to the server without blocking.
	Offer(r *Request) Offer
}

// Canceler is a Server that can cancel a call it is running: the proxy
// hands it a CANCEL's id. Cancel reports whether the call was there.
type Canceler interface {
	Cancel(id envelope.ID) bool
}

// InlineServer is a Server whose handlers may run on the proxy loop itself.
// When Inline reports true, the proxy calls HandleInline instead of Offer
// and sends the returned body (if any) at once: no hand-off to a worker and
// back. HandleInline must not block: it runs on the goroutine that owns the
// node's call socket.
type InlineServer interface {
	Server
	Inline() bool
	HandleInline(r *Request) (body []byte, o Offer)
}

// QuickServer is a Server whose handlers may run on the proxy loop while
// they are quick: the proxy runs a request that Quick reserved with
// poller.Loop.Detachable, so a handler misjudged as quick holds the loop for
// at most QuickBudget; then the loop goes on on another goroutine and the
// answer reaches it as a command. One hand-off to a worker and one back
// are saved per request.
type QuickServer interface {
	Server
	// Quick reserves a run of r on the loop (one of the server's
	// concurrency slots): true when its recent handlers were quick, it has
	// a free slot and nothing queued. HandleQuick(r), then QuickDone(),
	// must follow a true.
	Quick(r *Request) bool
	// HandleQuick runs r and returns its answer, as HandleInline does; it
	// may block past QuickBudget (then it runs off the loop).
	HandleQuick(r *Request) (body []byte, o Offer)
	// QuickDone releases the reservation once the answer is in the loop's
	// hands: the server's Stop waits for it, so that the answer is sent
	// before the proxy stops.
	QuickDone()
}

// QuickBudget is how long a QuickServer's handler may hold the proxy loop.
const QuickBudget = 200 * time.Microsecond

// DirectServer is a Server that takes direct casts (from the PULL socket).
// OfferDirect must not block; the server runs direct casts in the order it
// accepted them.
type DirectServer interface {
	Server
	OfferDirect(r *Request) Offer
}

// OneWay reports whether k is acknowledged instead of answered: a CAST, or
// a NOTIFY (a cast to one listener of a pool).
func OneWay(k envelope.Kind) bool { return k == envelope.KindCast || k == envelope.KindNotify }

// offer hands req to srv: inline, when srv runs its handlers on the loop,
// or quick ones on it (body is then its answer, if any), else to its
// queue. lost: a quick handler overran its budget, and this goroutine is
// no longer the loop; the answer went to the loop as a settleCmd.
func (c *core) offer(l *poller.Loop[Cmd], srv Server, req *Request) (body []byte, o Offer, lost bool) {
	if is, ok := srv.(InlineServer); ok && is.Inline() {
		body, o = is.HandleInline(req)
		return body, o, false
	}
	if qs, ok := srv.(QuickServer); ok && qs.Quick(req) {
		c.p.counters.QuickRuns.Add(1)
		defer qs.QuickDone()
		if l.Detachable(QuickBudget, func() { body, o = qs.HandleQuick(req) }) {
			return body, o, false // the loop sends it before it can stop
		}
		// Bounded by when the caller stops waiting: a loop that takes no
		// commands (a full send backlog) must not hold the server's Stop.
		ctx, cancel := context.WithDeadline(context.Background(), orReplyTTL(expiry(&req.Msg)))
		if err := c.p.handle.Submit(ctx, &settleCmd{req: req, body: body, o: o}); err != nil {
			c.p.counters.SendFailed.Add(1) // the loop stopped, or is stuck: its callers time out
		}
		cancel()
		return nil, 0, true
	}
	return nil, srv.Offer(req), false
}

// settleCmd carries the answer of a quick handler that overran its budget
// back to the loop (see core.offer).
type settleCmd struct {
	req  *Request
	body []byte
	o    Offer
}

func (*settleCmd) isProxyCmd() {}
