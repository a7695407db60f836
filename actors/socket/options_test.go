package socket_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/socket"
)

func newSocket(t *testing.T, zctx *zmq.Context, typ zmq.Type) *zmq.Socket {
	t.Helper()
	z, err := zctx.NewSocket(typ)
	if err != nil {
		t.Fatal(err)
	}
	if err := z.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = z.Close() })
	return z
}

func getInt(t *testing.T, name string, get func() (int, error)) int {
	t.Helper()
	v, err := get()
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return v
}

func getDur(t *testing.T, name string, get func() (time.Duration, error)) time.Duration {
	t.Helper()
	v, err := get()
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return v
}

func TestOptionsApply(t *testing.T) {
	zctx := testutil.ZMQ(t)
	z := newSocket(t, zctx, zmq.DEALER)
	o := socket.Options{
		KeepaliveIdle:        1500 * time.Millisecond, // whole seconds, rounded up: 2
		KeepaliveInterval:    3 * time.Second,
		KeepaliveCount:       4,
		HeartbeatInterval:    250 * time.Millisecond,
		HeartbeatTimeout:     time.Second,
		HeartbeatTTL:         2 * time.Second,
		MaxMessageSize:       1 << 20,
		SendHWM:              10,
		RecvHWM:              20,
		ReconnectInterval:    50 * time.Millisecond,
		ReconnectIntervalMax: 2 * time.Second,
	}
	if err := o.Apply(z); err != nil {
		t.Fatal(err)
	}
	ints := []struct {
		name string
		get  func() (int, error)
		want int
	}{
		{"keepalive", z.GetTcpKeepalive, 1},
		{"keepalive idle", z.GetTcpKeepaliveIdle, 2},
		{"keepalive interval", z.GetTcpKeepaliveIntvl, 3},
		{"keepalive count", z.GetTcpKeepaliveCnt, 4},
		{"send hwm", z.GetSndhwm, 10},
		{"receive hwm", z.GetRcvhwm, 20},
	}
	for _, c := range ints {
		if got := getInt(t, c.name, c.get); got != c.want {
			t.Errorf("%s = %d, want %d", c.name, got, c.want)
		}
	}
	if got, err := z.GetMaxmsgsize(); err != nil || got != 1<<20 {
		t.Errorf("max message size = %d, %v", got, err)
	}
	if got := getDur(t, "reconnect interval", z.GetReconnectIvl); got != 50*time.Millisecond {
		t.Errorf("reconnect interval = %v", got)
	}
	if got := getDur(t, "reconnect interval max", z.GetReconnectIvlMax); got != 2*time.Second {
		t.Errorf("reconnect interval max = %v", got)
	}
	// pebbe/zmq4 has no getters for the heartbeat options: see
	// TestOptionsHeartbeatOnTheWire.
}

func TestOptionsZeroChangesNothing(t *testing.T) {
	zctx := testutil.ZMQ(t)
	ref := newSocket(t, zctx, zmq.DEALER)
	z := newSocket(t, zctx, zmq.DEALER)
	if err := (socket.Options{}).Apply(z); err != nil {
		t.Fatal(err)
	}
	// Negative durations and counts are "unset" too.
	if err := (socket.Options{KeepaliveInterval: time.Second, KeepaliveCount: 3, HeartbeatTimeout: time.Second, HeartbeatTTL: time.Second, MaxMessageSize: -5, SendHWM: -1}).Apply(z); err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		name     string
		got, ref func() (int, error)
	}{
		{"keepalive", z.GetTcpKeepalive, ref.GetTcpKeepalive},
		{"keepalive idle", z.GetTcpKeepaliveIdle, ref.GetTcpKeepaliveIdle},
		{"keepalive interval", z.GetTcpKeepaliveIntvl, ref.GetTcpKeepaliveIntvl},
		{"keepalive count", z.GetTcpKeepaliveCnt, ref.GetTcpKeepaliveCnt},
		{"send hwm", z.GetSndhwm, ref.GetSndhwm},
		{"receive hwm", z.GetRcvhwm, ref.GetRcvhwm},
	} {
		if a, b := getInt(t, g.name, g.got), getInt(t, g.name, g.ref); a != b {
			t.Errorf("%s = %d, default %d", g.name, a, b)
		}
	}
	a, _ := z.GetMaxmsgsize()
	b, _ := ref.GetMaxmsgsize()
	if a != b {
		t.Errorf("max message size = %d, default %d", a, b)
	}
}

// zmtpPeer is a fake ZMTP 3 peer on a plain TCP connection: it completes the
// NULL handshake as a ROUTER and then never answers anything, recording the
// PING commands it receives until the zmq side drops the connection.
type zmtpPeer struct {
	ln   net.Listener
	done chan zmtpResult
}

type zmtpResult struct {
	err        error
	pings      int
	ttl        uint16        // TTL field of the first PING, in deciseconds
	firstPing  time.Duration // after the handshake
	dropAfter  time.Duration // after the first PING
	handshaked bool
}

func startZMTPPeer(t *testing.T) *zmtpPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &zmtpPeer{ln: ln, done: make(chan zmtpResult, 1)}
	go p.serve()
	t.Cleanup(func() { _ = ln.Close() })
	return p
}

func (p *zmtpPeer) serve() {
	c, err := p.ln.Accept()
	if err != nil {
		p.done <- zmtpResult{err: err}
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	p.done <- converse(c)
}

func converse(c net.Conn) (res zmtpResult) {
	greeting := make([]byte, 64)
	greeting[0], greeting[9] = 0xFF, 0x7F
	greeting[10], greeting[11] = 3, 0
	copy(greeting[12:], "NULL")
	if _, err := c.Write(greeting); err != nil {
		res.err = err
		return
	}
	theirs := make([]byte, 64)
	if _, err := io.ReadFull(c, theirs); err != nil {
		res.err = fmt.Errorf("greeting: %w", err)
		return
	}
	if theirs[0] != 0xFF || theirs[9] != 0x7F || theirs[10] != 3 || !bytes.HasPrefix(theirs[12:32], []byte("NULL")) {
		res.err = fmt.Errorf("unexpected greeting % x", theirs)
		return
	}
	ready := []byte("\x05READY\x0bSocket-Type\x00\x00\x00\x06ROUTER")
	if _, err := c.Write(append([]byte{0x04, byte(len(ready))}, ready...)); err != nil {
		res.err = err
		return
	}
	var handshake time.Time
	var firstPing time.Time
	for {
		flags, body, err := readFrame(c)
		if err != nil {
			if firstPing.IsZero() {
				res.err = fmt.Errorf("connection ended before any PING: %w", err)
			} else {
				res.dropAfter = time.Since(firstPing)
			}
			return
		}
		if flags&0x04 == 0 || len(body) == 0 || int(body[0])+1 > len(body) {
			continue // not a command
		}
		name := string(body[1 : 1+int(body[0])])
		switch name {
		case "READY":
			res.handshaked = true
			handshake = time.Now()
		case "PING":
			res.pings++
			if firstPing.IsZero() {
				firstPing = time.Now()
				res.firstPing = firstPing.Sub(handshake)
				data := body[1+len(name):]
				if len(data) >= 2 {
					res.ttl = binary.BigEndian.Uint16(data)
				}
			}
		}
	}
}

// readFrame reads one ZMTP 3 frame.
func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [1]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	var size uint64
	if hdr[0]&0x02 != 0 { // long frame
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		size = binary.BigEndian.Uint64(b[:])
	} else {
		var b [1]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		size = uint64(b[0])
	}
	if size > 1<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", size)
	}
	body := make([]byte, size)
	_, err := io.ReadFull(r, body)
	return hdr[0], body, err
}

// TestOptionsHeartbeatOnTheWire checks the heartbeat settings by their
// effect: a zmq socket with them sends PINGs carrying the TTL, and drops a
// peer that never answers once the timeout has passed.
func TestOptionsHeartbeatOnTheWire(t *testing.T) {
	zctx := testutil.ZMQ(t)
	peer := startZMTPPeer(t)
	z := newSocket(t, zctx, zmq.DEALER)
	const (
		ivl     = 50 * time.Millisecond
		timeout = 600 * time.Millisecond // well above ivl: libzmq's default timeout is ivl
		ttl     = 2 * time.Second
	)
	o := socket.Options{HeartbeatInterval: ivl, HeartbeatTimeout: timeout, HeartbeatTTL: ttl}
	if err := o.Apply(z); err != nil {
		t.Fatal(err)
	}
	if err := z.Connect("tcp://" + peer.ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	var res zmtpResult
	select {
	case res = <-peer.done:
	case <-time.After(8 * time.Second):
		t.Fatal("fake peer: no result")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	t.Logf("pings %d, first after %v, dropped %v after it, ttl %d ds", res.pings, res.firstPing, res.dropAfter, res.ttl)
	if !res.handshaked {
		t.Fatal("no READY from the zmq socket")
	}
	if want := uint16(ttl / (100 * time.Millisecond)); res.ttl != want {
		t.Errorf("PING TTL %d deciseconds, want %d", res.ttl, want)
	}
	if res.pings < 2 {
		t.Errorf("%d PINGs before the drop, want several (interval %v, timeout %v)", res.pings, ivl, timeout)
	}
	if res.dropAfter < timeout/2 {
		t.Errorf("dropped %v after the first PING, want about the timeout %v", res.dropAfter, timeout)
	}
}
