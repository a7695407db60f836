package socket

import (
	"fmt"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// Options are the settings every network-facing (TCP) socket gets.
type Options struct {
	// KeepaliveIdle, KeepaliveInterval and KeepaliveCount configure TCP
	// keepalive (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT).
	// libzmq takes whole seconds: durations are rounded up. Zero idle turns
	// keepalive off.
	KeepaliveIdle     time.Duration
	KeepaliveInterval time.Duration
	KeepaliveCount    int
	// HeartbeatInterval, HeartbeatTimeout and HeartbeatTTL configure ZMTP
	// heartbeats (ZMQ_HEARTBEAT_IVL, _TIMEOUT, _TTL): a peer that does not
	// answer a PING within the timeout is disconnected. Zero interval turns
	// them off.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	HeartbeatTTL      time.Duration
	// MaxMessageSize is ZMQ_MAXMSGSIZE: a peer that sends a larger frame is
	// disconnected by libzmq. Zero means no limit.
	MaxMessageSize int64
	// SendHWM and RecvHWM are the high-water marks in messages (0: libzmq's 1000).
	SendHWM, RecvHWM int
	// ReconnectInterval and ReconnectIntervalMax bound libzmq's reconnection
	// backoff for connecting sockets.
	ReconnectInterval, ReconnectIntervalMax time.Duration
	// ConnectTimeout is ZMQ_CONNECT_TIMEOUT: a TCP connect that has not
	// completed by then fails (and is retried), instead of waiting out the
	// kernel's SYN retries (minutes) for a host that does not answer. Zero
	// keeps the kernel's.
	ConnectTimeout time.Duration
	// Linger is ZMQ_LINGER: how long the zmq context's termination waits for
	// messages the socket has taken but not yet sent (a reply or ACK handed
	// over just before Close). Zero keeps the loop's default, 0 ms: closing
	// drops them. A bounded flush on Close is what a Transport asks for.
	Linger time.Duration
	// Curve, if set, turns on CURVE (encryption and authentication) for the
	// socket; see Curve. Never set it on IPC or inproc sockets: they are
	// local, and their peers are not CURVE peers.
	Curve *Curve
}

// Curve is a socket's CURVE role and keys (Z85 text, 40 characters).
//
// A socket whose ServerKey is empty is a CURVE server (it binds, and the
// Transport's ZAP handler decides which client keys it accepts); the
// others are CURVE clients of the server whose public key is ServerKey.
type Curve struct {
	PublicKey, SecretKey string // this node's long-term key pair
	ServerKey            string // the bound peer's public key; "" for a server
}

// Server reports whether c makes a socket a CURVE server.
func (c *Curve) Server() bool { return c != nil && c.ServerKey == "" }

// ZAPDomain is the ZAP domain of zmqmsg's CURVE servers.
const ZAPDomain = "zmqmsg"

// String never shows the secret key.
func (c *Curve) String() string {
	if c == nil {
		return "curve(off)"
	}
	if c.Server() {
		return "curve(server)"
	}
	return "curve(client)"
}

func seconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

// Apply sets o on z. It must run on the goroutine that owns z (in a loop's
// Setup).
func (o Options) Apply(z *zmq.Socket) error {
	type setting struct {
		name string
		set  func() error
	}
	var settings []setting
	add := func(name string, f func() error) { settings = append(settings, setting{name, f}) }
	if o.KeepaliveIdle > 0 {
		add("tcp keepalive", func() error { return z.SetTcpKeepalive(1) })
		add("tcp keepalive idle", func() error { return z.SetTcpKeepaliveIdle(seconds(o.KeepaliveIdle)) })
		if o.KeepaliveInterval > 0 {
			add("tcp keepalive interval", func() error { return z.SetTcpKeepaliveIntvl(seconds(o.KeepaliveInterval)) })
		}
		if o.KeepaliveCount > 0 {
			add("tcp keepalive count", func() error { return z.SetTcpKeepaliveCnt(o.KeepaliveCount) })
		}
	}
	if o.HeartbeatInterval > 0 {
		add("heartbeat interval", func() error { return z.SetHeartbeatIvl(o.HeartbeatInterval) })
		if o.HeartbeatTimeout > 0 {
			add("heartbeat timeout", func() error { return z.SetHeartbeatTimeout(o.HeartbeatTimeout) })
		}
		if o.HeartbeatTTL > 0 {
			add("heartbeat ttl", func() error { return z.SetHeartbeatTtl(o.HeartbeatTTL) })
		}
	}
	if o.MaxMessageSize > 0 {
		add("max message size", func() error { return z.SetMaxmsgsize(o.MaxMessageSize) })
	}
	if o.SendHWM > 0 {
		add("send hwm", func() error { return z.SetSndhwm(o.SendHWM) })
	}
	if o.RecvHWM > 0 {
		add("receive hwm", func() error { return z.SetRcvhwm(o.RecvHWM) })
	}
	if o.ReconnectInterval > 0 {
		add("reconnect interval", func() error { return z.SetReconnectIvl(o.ReconnectInterval) })
	}
	if o.ReconnectIntervalMax > 0 {
		add("reconnect interval max", func() error { return z.SetReconnectIvlMax(o.ReconnectIntervalMax) })
	}
	if o.ConnectTimeout > 0 {
		add("connect timeout", func() error { return z.SetConnectTimeout(o.ConnectTimeout) })
	}
	if o.Linger > 0 {
		add("linger", func() error { return z.SetLinger(o.Linger) })
	}
	if c := o.Curve; c != nil {
		// Errors name the option, never a key (libzmq's errors carry no
		// value either).
		if c.Server() {
			add("zap domain", func() error { return z.SetZapDomain(ZAPDomain) })
			add("curve server", func() error { return z.SetCurveServer(1) })
			add("curve secret key", func() error { return z.SetCurveSecretkey(c.SecretKey) })
		} else {
			add("curve server key", func() error { return z.SetCurveServerkey(c.ServerKey) })
			add("curve public key", func() error { return z.SetCurvePublickey(c.PublicKey) })
			add("curve secret key", func() error { return z.SetCurveSecretkey(c.SecretKey) })
		}
	}
	for _, s := range settings {
		if err := s.set(); err != nil {
			return fmt.Errorf("set %s: %w", s.name, err)
		}
	}
	return nil
}
