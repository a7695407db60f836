package socket

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
)

// monitorSeq makes the monitors' inproc endpoints unique in a process.
var monitorSeq atomic.Uint64

// ArmMonitor arms a socket monitor on z for events and connects a PAIR to
// it, owned by the same loop as z; it returns the PAIR's index in the loop.
// Call it from Handler.Setup, before z binds or connects, so that no event
// is missed. The loop hands the PAIR's messages to HandleMessage like any
// other socket's; ParseEvent decodes them.
func ArmMonitor[C any](l *poller.Loop[C], z *zmq.Socket, events zmq.Event) (int, error) {
	ep := fmt.Sprintf("inproc://zmqmsg-monitor-%d", monitorSeq.Add(1))
	if err := z.Monitor(ep, events); err != nil {
		return -1, fmt.Errorf("monitor: %w", err)
	}
	i, mon, err := l.NewSocket(zmq.PAIR, "monitor")
	if err != nil {
		return -1, err
	}
	if err := mon.Connect(ep); err != nil {
		return -1, fmt.Errorf("monitor: %w", err)
	}
	return i, nil
}

// ParseEvent decodes a monitor message: frame 1 holds the event (u16,
// little endian) and its value (u32), frame 2 the endpoint.
func ParseEvent(frames [][]byte) (ev zmq.Event, value uint32, endpoint string, ok bool) {
	if len(frames) < 1 || len(frames[0]) < 6 {
		return 0, 0, "", false
	}
	ev = zmq.Event(binary.LittleEndian.Uint16(frames[0]))
	value = binary.LittleEndian.Uint32(frames[0][2:])
	if len(frames) > 1 {
		endpoint = string(frames[1])
	}
	return ev, value, endpoint, true
}

// HandshakeFailedEvents are the monitor events of a failed ZMTP handshake:
// a peer with the wrong security mechanism (no CURVE), an unknown key, or
// a malformed handshake.
const HandshakeFailedEvents = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH

// Handshakes counts and logs the failed handshakes on a loop's bound
// CURVE-server sockets (see Watch). The log line names the socket, the
// endpoint and the kind of failure, never a key; it is written for the
// first failure and then at every power of two, so a hostile peer cannot
// flood the log.
type Handshakes struct {
	Failed *atomic.Uint64 // shared by every incarnation of the loop
	Log    *slog.Logger
	mask   uint64 // bit i set: loop socket i is a monitor
}

// Watch arms a handshake monitor on z when opts make it a CURVE server, and
// remembers the monitor's index. The proxies call it after all their
// sockets are bound (so that the other sockets keep their indexes): a
// handshake that fails in the moment between bind and Watch is not counted.
func Watch[C any](h *Handshakes, l *poller.Loop[C], z *zmq.Socket, opts Options) error {
	if !opts.Curve.Server() {
		return nil
	}
	i, err := ArmMonitor(l, z, HandshakeFailedEvents)
	if err != nil {
		return err
	}
	if i >= 64 {
		return fmt.Errorf("monitor: socket index %d over 63", i)
	}
	h.mask |= 1 << uint(i)
	return nil
}

// Handle reports whether socket sock is one of the watched monitors and,
// if so, counts and logs the event in frames.
func (h *Handshakes) Handle(sock int, frames [][]byte) bool {
	if h.mask == 0 || sock < 0 || sock >= 64 || h.mask&(1<<uint(sock)) == 0 {
		return false
	}
	ev, value, endpoint, ok := ParseEvent(frames)
	if !ok || ev&HandshakeFailedEvents == 0 {
		return true
	}
	n := h.Failed.Add(1)
	if n&(n-1) == 0 && h.Log != nil {
		h.Log.Warn("handshake refused: a peer without CURVE, with a key the ZAP handler refused, or a broken handshake",
			"endpoint", endpoint, "failure", failureName(ev), "code", value, "refused_total", n)
	}
	return true
}

func failureName(ev zmq.Event) string {
	switch ev {
	case zmq.EVENT_HANDSHAKE_FAILED_AUTH:
		return "auth"
	case zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
		return "protocol"
	default:
		return "no detail"
	}
}

// Rehandshake keeps a connecting CURVE socket trying. libzmq gives up on
// an endpoint for good after a failed handshake (a refused key is a
// protocol error: the session terminates, it never reconnects), so a node
// that lists our key later would never be reached. Rehandshake reconnects
// the endpoint itself after a failed handshake, backing off from Min to
// Max, until a handshake succeeds. Owned by the socket's loop.
type Rehandshake struct {
	Endpoint string
	Min, Max time.Duration

	refused bool
	wait    time.Duration
	at      time.Time // when to reconnect; zero when not waiting
}

// newRehandshake backs off like the socket's own reconnection (opts).
func newRehandshake(endpoint string, opts Options) Rehandshake {
	return Rehandshake{Endpoint: endpoint, Min: opts.ReconnectInterval, Max: opts.ReconnectIntervalMax}
}

// isRefusal reports whether a monitor event of a CURVE client means the
// node refused us: our key (AUTH) or our mechanism (PROTOCOL). libzmq also
// reports NO_DETAIL for a connection that drops during the greeting; the
// DISCONNECTED that follows it is a node down, not a refusal.
func isRefusal(ev zmq.Event) bool {
	return ev == zmq.EVENT_HANDSHAKE_FAILED_AUTH || ev == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
}

// Failed records a failed handshake and schedules the reconnect.
func (r *Rehandshake) Failed(now time.Time) {
	r.refused = true
	switch {
	case r.wait <= 0:
		r.wait = max(r.Min, 10*time.Millisecond)
	default:
		r.wait = min(2*r.wait, max(r.Max, r.Min))
	}
	r.at = now.Add(r.wait)
}

// Succeeded records a completed handshake.
func (r *Rehandshake) Succeeded() { r.refused, r.wait, r.at = false, 0, time.Time{} }

// Refused reports whether the last handshake failed (and none succeeded
// since).
func (r *Rehandshake) Refused() bool { return r.refused }

// Deadline is when Reconnect is due (zero: not waiting).
func (r *Rehandshake) Deadline() time.Time { return r.at }

// Reconnect disconnects and connects z to the endpoint again if it is due,
// and reports whether it did. A Connect that fails is tried again after
// the next backoff (its error is returned).
func (r *Rehandshake) Reconnect(z *zmq.Socket, now time.Time) (bool, error) {
	if r.at.IsZero() || now.Before(r.at) {
		return false, nil
	}
	r.at = time.Time{}
	_ = z.Disconnect(r.Endpoint) // the session may be gone already
	if err := z.Connect(r.Endpoint); err != nil {
		r.Failed(now)
		return false, fmt.Errorf("reconnect %s: %w", r.Endpoint, err)
	}
	return true, nil
}

// clientWatch is what a connecting socket without liveness of its own (a
// PUSH, an XPUB) needs when it is a CURVE client: a monitor of its
// handshakes that drives a Rehandshake. Without CURVE it does nothing.
type clientWatch struct {
	mon int // the monitor's index in the loop, -1 if none
	rh  Rehandshake
}

// watchClient arms the monitor of z (before Connect) if opts make it a
// CURVE client.
func watchClient[C any](l *poller.Loop[C], z *zmq.Socket, opts Options, endpoint string) (clientWatch, error) {
	w := clientWatch{mon: -1, rh: newRehandshake(endpoint, opts)}
	if opts.Curve == nil || opts.Curve.Server() {
		return w, nil
	}
	var err error
	w.mon, err = ArmMonitor(l, z, zmq.EVENT_HANDSHAKE_SUCCEEDED|HandshakeFailedEvents)
	return w, err
}

// connectClient creates a socket of type t in l, applies opts and then
// set, watches its CURVE handshakes and connects it to endpoint.
func connectClient[C any](l *poller.Loop[C], t zmq.Type, name, endpoint string, opts Options, set func(*zmq.Socket) error) (clientWatch, error) {
	w := clientWatch{mon: -1}
	_, z, err := l.NewSocket(t, name)
	if err != nil {
		return w, err
	}
	if err := opts.Apply(z); err != nil {
		return w, err
	}
	if err := set(z); err != nil {
		return w, err
	}
	if w, err = watchClient(l, z, opts, endpoint); err != nil {
		return w, err
	}
	return w, z.Connect(endpoint)
}

// event handles a message of socket sock if it is the monitor, and says
// whether it was.
func (w *clientWatch) event(sock int, frames [][]byte, now time.Time, failed *atomic.Uint64) bool {
	if w.mon < 0 || sock != w.mon {
		return false
	}
	if ev, _, _, ok := ParseEvent(frames); ok {
		switch {
		case ev == zmq.EVENT_HANDSHAKE_SUCCEEDED:
			w.rh.Succeeded()
		case isRefusal(ev):
			failed.Add(1)
			w.rh.Failed(now)
		}
	}
	return true
}
