package proxy

import (
	"fmt"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/socket"
)

// ports are a node's public endpoints: the call (or notify) ROUTER and, if
// not empty, the direct-cast PULL and the fanout XSUB.
type ports struct {
	call, cast, fanout string
}

// Endpoint returns the bound call (or notify) endpoint, with the actual
// port.
func (p *ports) Endpoint() string { return p.call }

// CastEndpoint returns the bound direct-cast endpoint ("" if none).
func (p *ports) CastEndpoint() string { return p.cast }

// FanoutEndpoint returns the bound fanout endpoint ("" if none).
func (p *ports) FanoutEndpoint() string { return p.fanout }

// publicSocks are the public sockets a loop has bound.
type publicSocks struct {
	cast, fanout int           // loop indexes, -1 if none (the ROUTER is 0)
	all          []*zmq.Socket // for the handshake monitors
}

// bindPublic creates and binds the public sockets: the ROUTER first (index
// 0), then the XSUB and the PULL if want names them. bound are the
// endpoints the first start got (it writes them, before Start returns); a
// restarted loop binds them again.
func bindPublic[C any](l *poller.Loop[C], want ports, bound *ports, opts socket.Options) (publicSocks, error) {
	ps := publicSocks{cast: -1, fanout: -1}
	add := func(i int, z *zmq.Socket, err error) (int, error) {
		if z != nil {
			ps.all = append(ps.all, z)
		}
		return i, err
	}
	if _, err := add(bindOne(l, zmq.ROUTER, "router", want.call, &bound.call, opts, nil)); err != nil {
		return ps, err
	}
	if want.fanout != "" {
		i, err := add(bindOne(l, zmq.XSUB, "xsub", want.fanout, &bound.fanout, opts, nil))
		if err != nil {
			return ps, err
		}
		ps.fanout = i
	}
	if want.cast != "" {
		po := opts
		po.RecvHWM = socket.DirectCastHWM
		i, err := add(bindOne(l, zmq.PULL, "pull", want.cast, &bound.cast, po, nil))
		if err != nil {
			return ps, err
		}
		ps.cast = i
	}
	return ps, nil
}

// watchPublic arms the handshake monitors of the public sockets (CURVE
// only). They come after every other socket, which keep their indexes
// whatever the security settings.
func watchPublic[C any](hs *socket.Handshakes, l *poller.Loop[C], ps publicSocks, opts socket.Options) error {
	for _, z := range ps.all {
		if err := socket.Watch(hs, l, z, opts); err != nil {
			return err
		}
	}
	return nil
}

// bindOne creates a socket of type t, runs before (if not nil), applies
// opts and binds it: to *bound on a restart, else to endpoint, storing the
// endpoint it got in *bound. A ROUTER reports unroutable messages (a
// caller that went away) as errors instead of dropping them silently.
func bindOne[C any](l *poller.Loop[C], t zmq.Type, name, endpoint string, bound *string, opts socket.Options, before func(*zmq.Socket) error) (int, *zmq.Socket, error) {
	i, z, err := l.NewSocket(t, name)
	if err != nil {
		return -1, nil, err
	}
	if before != nil {
		if err := before(z); err != nil {
			return -1, z, err
		}
	}
	if err := opts.Apply(z); err != nil {
		return -1, z, err
	}
	if t == zmq.ROUTER {
		if err := z.SetRouterMandatory(1); err != nil {
			return -1, z, err
		}
	}
	rebind := *bound != ""
	if rebind {
		endpoint = *bound
	}
	if err := bindRetry(z, endpoint, rebind); err != nil {
		return -1, z, fmt.Errorf("bind %s: %w", endpoint, err)
	}
	if !rebind {
		if *bound, err = z.GetLastEndpoint(); err != nil {
			return -1, z, err
		}
	}
	return i, z, nil
}

// rebindWait bounds how long a restarted loop retries its port while the
// failed socket's listener is still being closed by libzmq's I/O thread.
const rebindWait = 2 * time.Second

// bindRetry binds z to endpoint. On a restart (rebind) the port is the one
// the first start got, and libzmq closes the old listener asynchronously, so
// EADDRINUSE is retried with a short backoff for up to rebindWait; on a first
// start it is returned at once (the port belongs to somebody else).
func bindRetry(z *zmq.Socket, endpoint string, rebind bool) error {
	deadline := time.Now().Add(rebindWait)
	backoff := time.Millisecond
	for {
		err := z.Bind(endpoint)
		if err == nil || !rebind || zmq.AsErrno(err) != zmq.EADDRINUSE || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(backoff)
		<-t.C // runs in Setup, before the loop serves anything
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}
