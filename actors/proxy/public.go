package proxy

import (
	"time"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// public is the handler of the loop of a proxy that owns its node's ports
// (no Config.Join): the call ROUTER (socket 0), and optionally the fanout
// XSUB and the direct-cast PULL. A fresh one is made for every (re)start
// of the loop; everything in it is owned by the loop goroutine.
type public struct {
	core
	want     ports // the configured endpoints
	opts     socket.Options
	castSock int               // index of the PULL, -1 if none
	fanSock  int               // index of the XSUB, -1 if none
	hs       socket.Handshakes // monitors of the public sockets (CURVE only)
}

func newPublic(p *Proxy, cfg Config) *public {
	h := &public{want: ports{call: cfg.Bind, cast: cfg.CastBind, fanout: cfg.FanoutBind}, opts: cfg.Options, castSock: -1, fanSock: -1}
	h.init(p)
	return h
}

// Setup binds the public sockets (again, on a restart: to the ports the
// first start got) and subscribes the XSUB to what the node serves.
func (h *public) Setup(l *poller.Loop[Cmd]) error {
	h.hs = socket.Handshakes{Failed: &h.p.counters.HandshakeFailed, Log: h.p.log}
	ps, err := bindPublic(l, h.want, &h.p.ports, h.opts)
	if err != nil {
		return err
	}
	h.castSock, h.fanSock = ps.cast, ps.fanout
	if err := h.resubscribe(l); err != nil {
		return err
	}
	return watchPublic(&h.hs, l, ps, h.opts)
}

// HandleMessage handles a message from one of the public sockets.
func (h *public) HandleMessage(l *poller.Loop[Cmd], sock int, frames [][]byte) {
	switch sock {
	case 0:
		h.request(l, frames, true)
	case h.castSock:
		var m envelope.Message
		if decodeBody(&h.p.counters, frames, 1, envelope.KindCast, &m) {
			h.direct(l, sock, &m)
		}
	case h.fanSock:
		var m envelope.Message
		if decodeBody(&h.p.counters, frames, 2, envelope.KindFanout, &m) {
			h.deliverFanout(l, sock, &m)
		}
	default:
		h.hs.Handle(sock, frames)
	}
}

// HandleCommand runs a command.
func (h *public) HandleCommand(l *poller.Loop[Cmd], c Cmd) {
	if h.command(l, c) {
		return
	}
	if c, ok := c.(*subCmd); ok {
		c.done <- h.subscribe(l, c.key, c.on)
	}
}

// Deadline is when the waiting replies, or the held direct cast, are
// retried next.
func (h *public) Deadline() time.Time { return sooner(h.heldDeadline(), h.rq.deadline()) }

// HandleTimer retries the waiting replies and the held direct cast.
func (h *public) HandleTimer(l *poller.Loop[Cmd], now time.Time) {
	h.rq.retry(l, now)
	h.heldTimer(l, now)
}

// Shutdown: see core.shutdown.
func (h *public) Shutdown(l *poller.Loop[Cmd], pending []Cmd, cause error) {
	h.shutdown(l, pending, cause)
}
