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
	var err error
	if o.KeepaliveIdle > 0 {
		set(&err, "tcp keepalive", 1, z.SetTcpKeepalive)
		set(&err, "tcp keepalive idle", seconds(o.KeepaliveIdle), z.SetTcpKeepaliveIdle)
		setPositive(&err, "tcp keepalive interval", seconds(o.KeepaliveInterval), z.SetTcpKeepaliveIntvl)
		setPositive(&err, "tcp keepalive count", o.KeepaliveCount, z.SetTcpKeepaliveCnt)
	}
	if o.HeartbeatInterval > 0 {
		set(&err, "heartbeat interval", o.HeartbeatInterval, z.SetHeartbeatIvl)
		setPositive(&err, "heartbeat timeout", o.HeartbeatTimeout, z.SetHeartbeatTimeout)
		setPositive(&err, "heartbeat ttl", o.HeartbeatTTL, z.SetHeartbeatTtl)
	}
	setPositive(&err, "max message size", o.MaxMessageSize, z.SetMaxmsgsize)
	setPositive(&err, "send hwm", o.SendHWM, z.SetSndhwm)
	setPositive(&err, "receive hwm", o.RecvHWM, z.SetRcvhwm)
	setPositive(&err, "reconnect interval", o.ReconnectInterval, z.SetReconnectIvl)
	setPositive(&err, "reconnect interval max", o.ReconnectIntervalMax, z.SetReconnectIvlMax)
	setPositive(&err, "connect timeout", o.ConnectTimeout, z.SetConnectTimeout)
	setPositive(&err, "linger", o.Linger, z.SetLinger)
	if c := o.Curve; c != nil {
		// Errors name the option, never a key (libzmq's errors carry no
		// value either).
		if c.Server() {
			set(&err, "zap domain", ZAPDomain, z.SetZapDomain)
			set(&err, "curve server", 1, z.SetCurveServer)
		} else {
			set(&err, "curve server key", c.ServerKey, z.SetCurveServerkey)
			set(&err, "curve public key", c.PublicKey, z.SetCurvePublickey)
		}
		set(&err, "curve secret key", c.SecretKey, z.SetCurveSecretkey)
	}
	return err
}

// set calls f(v) unless *err already holds an earlier option's error, and
// stores f's error, naming the option, in *err.
func set[T any](err *error, name string, v T, f func(T) error) {
	if *err != nil {
		return
	}
	if e := f(v); e != nil {
		*err = fmt.Errorf("set %s: %w", name, e)
	}
}

// setPositive is set for a v > 0; zero keeps libzmq's default.
func setPositive[T ~int | ~int64](err *error, name string, v T, f func(T) error) {
	if v > 0 {
		set(err, name, v, f)
	}
}
