package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/actors/zap"
	"github.com/zmqmsg/zmqmsg/directory"
)

// startSecurity starts the ZAP handler in the engine's context, before any
// CURVE server socket exists, and gives the bound sockets their CURVE
// server role (cfg.Socket is what routerOptions and the proxies start
// from; client sockets get their role per node in clientOptions).
func (e *Engine) startSecurity() error {
	sec := e.cfg.Security
	if sec == nil {
		return nil
	}
	e.cfg.Socket.Curve = &socket.Curve{PublicKey: sec.PublicKey, SecretKey: sec.SecretKey}
	if e.cfg.Join != "" {
		return nil // a member binds no TCP port: the daemon's handler decides
	}
	var err error
	e.zap, err = startZAP(e.ctx, e.root, e.zctx, e.cfg.Strategy, e.log, sec)
	return err
}

// startZAP checks that libzmq has CURVE and starts a ZAP handler for sec
// in zctx.
func startZAP(ctx context.Context, root *actor.RootContext, zctx *zmq.Context, strategy poller.Strategy, log *slog.Logger, sec *Security) (*zap.Handler, error) {
	if !zmq.HasCurve() {
		return nil, fmt.Errorf("zmqmsg: Security needs CURVE, and this libzmq was built without it")
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	h, err := zap.Start(sctx, root, "zap", zap.Config{
		ZMQ: zctx, Allowed: sec.Allowed, Logger: log,
		Loop: poller.Options{Strategy: strategy},
	})
	if err != nil {
		return nil, fmt.Errorf("zmqmsg: %w", err)
	}
	return h, nil
}

// checkDaemonSecurity: a member and its daemon must agree on CURVE. A
// secured member behind a plaintext daemon would publish servers anyone
// can reach; a plaintext member behind a secured daemon could not call any
// secured node, its own included.
func (e *Engine) checkDaemonSecurity() error {
	switch {
	case e.cfg.Security != nil && e.node.CurveKey == "":
		return fmt.Errorf("zmqmsg: join %s: %w: Security is set, but the proxy daemon runs without CURVE", e.cfg.Join, ErrInsecureNode)
	case e.cfg.Security == nil && e.node.CurveKey != "":
		return fmt.Errorf("zmqmsg: join %s: %w: the proxy daemon runs CURVE", e.cfg.Join, ErrSecurityRequired)
	}
	return nil
}

// checkPeer refuses a node whose security does not match this engine's:
// a secured engine never sends in plaintext, and a plaintext engine never
// tries a secured node. It allocates nothing when they match.
func (e *Engine) checkPeer(node directory.Node) error {
	sec := e.cfg.Security
	switch {
	case sec == nil && node.CurveKey == "":
		return nil
	case sec == nil:
		return fmt.Errorf("%w: node %s", ErrSecurityRequired, node.ID())
	case node.CurveKey == "":
		return fmt.Errorf("%w: node %s", ErrInsecureNode, node.ID())
	case !ValidKey(node.CurveKey):
		// Directory data is input like any other.
		return fmt.Errorf("%w: node %s publishes a malformed CURVE key", ErrInsecureNode, node.ID())
	}
	return nil
}

// clientOptions are the options of a socket that connects to node (which
// passed checkPeer): a CURVE client of the node's published key when this
// engine has Security.
func (e *Engine) clientOptions(node directory.Node) socket.Options {
	o := e.cfg.Socket
	if sec := e.cfg.Security; sec != nil {
		o.Curve = &socket.Curve{PublicKey: sec.PublicKey, SecretKey: sec.SecretKey, ServerKey: node.CurveKey}
	}
	return o
}

// socketKey names the socket to a node: its id, and for a CURVE node the
// start of its key, so that a node that comes back with a new key pair gets
// a new socket instead of one that keeps failing its handshake.
func socketKey(id string, node directory.Node) string {
	if node.CurveKey == "" {
		return id
	}
	return id + "#" + node.CurveKey
}

// socketName names the actor of the socket with key (socketKey): its kind
// and node id, and for a CURVE node a short hash of the key, so that a node
// back with a new key pair gets an actor of its own while the old one
// stops.
func socketName(kind, key string) string {
	tag, curve, ok := strings.Cut(key, "#")
	if !ok {
		return kind + "-" + tag
	}
	h := fnv.New32a()
	h.Write([]byte(curve))
	return fmt.Sprintf("%s-%s#%08x", kind, tag, h.Sum32())
}

// socketTag returns the node id part of a socket key (socketKey).
func socketTag(key string) string {
	tag, _, _ := strings.Cut(key, "#")
	return tag
}

// ValidKey reports whether k is a CURVE key in Z85 text (40 characters).
func ValidKey(k string) bool {
	_, err := DecodeKey(k)
	return err == nil
}

// z85 is the Z85 alphabet (ZeroMQ RFC 32).
const z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

var z85Value = func() (v [256]int8) {
	for i := range v {
		v[i] = -1
	}
	for i := 0; i < len(z85); i++ {
		v[z85[i]] = int8(i)
	}
	return v
}()

// DecodeKey decodes a CURVE key from Z85 text. It checks every character
// (libzmq's decoder, and so pebbe's, do not report bad input), and its
// errors never repeat the key.
func DecodeKey(k string) (zap.Key, error) {
	var key zap.Key
	if len(k) != 40 {
		return key, fmt.Errorf("a CURVE key is 40 characters of Z85, not %d", len(k))
	}
	for i := 0; i < 40; i += 5 {
		var v uint64
		for j := i; j < i+5; j++ {
			d := z85Value[k[j]]
			if d < 0 {
				return key, fmt.Errorf("a CURVE key has a character outside Z85 at %d", j)
			}
			v = v*85 + uint64(d)
		}
		if v > 0xFFFFFFFF {
			return key, fmt.Errorf("a CURVE key has an out-of-range group at %d", i)
		}
		o := i / 5 * 4
		key[o], key[o+1], key[o+2], key[o+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	}
	return key, nil
}

// ErrNoSecurity: the engine (or daemon) runs without Security, so it has no
// allowed keys to replace.
var ErrNoSecurity = errors.New("zmqmsg: no Security configured")

// SetAllowed replaces the client keys the engine's ZAP handler accepts
// (the node's own key must be among them; the zmqmsg package adds it).
func (e *Engine) SetAllowed(keys []zap.Key) error {
	if e.cfg.Join != "" && e.cfg.Security != nil {
		return errors.New("zmqmsg: this node joined a proxy daemon: its ports, and the keys they allow, are the daemon's")
	}
	if e.zap == nil {
		return ErrNoSecurity
	}
	e.zap.SetAllowed(keys)
	return nil
}

// SetAllowed replaces the client keys the daemon's ZAP handler accepts.
func (d *Daemon) SetAllowed(keys []zap.Key) error {
	if d.zap == nil {
		return ErrNoSecurity
	}
	d.zap.SetAllowed(keys)
	return nil
}
