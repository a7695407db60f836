package proxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/actors/socket"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// A proxy made with Config.Join is a member of a node proxy daemon (see
// Broker) instead of owning the node's ports:
//
//	remote DEALER --tcp--> daemon ROUTER :9501 --ipc--> ROUTER (daemon) --> DEALER (member proxy loop) --> servers
//
// The member's socket 0 is a DEALER connected to the daemon's IPC endpoint.
// What arrives on it:
//
//	[caller routing..., body]   a CALL, CAST or NOTIFY: handled exactly like
//	                            on a ROUTER; the reply goes back with the
//	                            routing frames and the daemon passes it on
//	[body] of kind CAST         a direct cast (the daemon's PULL port)
//	[body] of kind FANOUT       a fanout for a topic this member serves
//	[body] of kind ACK          the daemon's answer to an ATTACH or DETACH
//
// The member tells the daemon what it serves with ATTACH messages (Attach,
// at Serve) and DETACH (Detach, at Stop), and repeats an ATTACH for every
// server on each heartbeat: a daemon that restarted learns them again, and a
// daemon drops the servers of a member it has not heard from for a few
// heartbeats (a killed process).

// ErrStopped is returned for a command the proxy could not run because it
// stopped (or its loop restarted) first.
var ErrStopped = errors.New("proxy: stopped")

// ErrNoDaemon is returned when the node proxy daemon does not answer.
var ErrNoDaemon = errors.New("proxy: node proxy daemon not answering")

// ErrDaemonBusy is returned when the daemon answers that it is starting or
// draining; a hello may be tried again.
var ErrDaemonBusy = errors.New("proxy: node proxy daemon starting or draining")

// DefaultMemberHeartbeat is how often a member repeats its ATTACHes.
const DefaultMemberHeartbeat = time.Second

// member is the handler of the loop of a proxy that joined a node proxy
// daemon (Config.Join). A fresh one is made for every (re)start of the
// loop; everything in it is owned by the loop goroutine.
type member struct {
	core
	endpoint string         // the daemon's
	opts     socket.Options // for the DEALER (made local: see Setup)
	every    time.Duration  // heartbeat period
	nextBeat time.Time
	pending  map[envelope.ID]*attachCmd // ATTACH/DETACH waiting for the daemon's ACK
}

func newMember(p *Proxy, cfg Config) *member {
	h := &member{endpoint: cfg.Join, opts: cfg.Options, every: cfg.Heartbeat}
	if h.every <= 0 {
		h.every = DefaultMemberHeartbeat
	}
	h.init(p)
	return h
}

// attachCmd sends an ATTACH or DETACH to the daemon and reports its ACK.
type attachCmd struct {
	msg     envelope.Message
	expires time.Time
	done    chan attachResult // buffered 1
}

func (*attachCmd) isProxyCmd() {}

type attachResult struct {
	node directory.Node // the daemon's node (from a hello)
	err  error
}

// DaemonNode asks the daemon of a member how other nodes reach it: the
// node a member's servers register in the directory.
func (p *Proxy) DaemonNode(ctx context.Context) (directory.Node, error) {
	if !p.Member() {
		return directory.Node{}, fmt.Errorf("proxy: not a member of a daemon")
	}
	return p.control(ctx, envelope.KindAttach, directory.Key{}, "")
}

func (p *Proxy) control(ctx context.Context, kind envelope.Kind, key directory.Key, name string) (directory.Node, error) {
	c := &attachCmd{
		msg:  envelope.Message{Kind: kind, ID: envelope.NewID(), Exchange: key.Exchange, Topic: key.Topic, Server: name},
		done: make(chan attachResult, 1),
	}
	if d, ok := ctx.Deadline(); ok {
		c.expires = d
	} else {
		c.expires = time.Now().Add(DefaultReplyTTL)
	}
	if err := p.handle.Submit(ctx, c); err != nil {
		return directory.Node{}, err
	}
	select {
	case r := <-c.done:
		return r.node, r.err
	case <-ctx.Done():
		what := fmt.Sprintf("%s %s", kind, key)
		if key.Topic == "" {
			what = "hello"
		}
		return directory.Node{}, fmt.Errorf("%w at %s (%s): %w", ErrNoDaemon, p.join, what, ctx.Err())
	}
}

// Setup connects the DEALER to the daemon.
func (h *member) Setup(l *poller.Loop[Cmd]) error {
	_, z, err := l.NewSocket(zmq.DEALER, "dealer")
	if err != nil {
		return err
	}
	o := h.opts
	// IPC to a local daemon: no TCP keepalive, and the daemon's death is
	// seen by the kernel at once.
	o.KeepaliveIdle = 0
	o.HeartbeatInterval = 0
	o.Curve = nil // IPC: local, in a 0700 directory
	// A restarted daemon is found again within a second.
	o.ReconnectIntervalMax = time.Second
	if err := o.Apply(z); err != nil {
		return err
	}
	if err := z.Connect(h.endpoint); err != nil {
		return fmt.Errorf("connect %s: %w", h.endpoint, err)
	}
	h.nextBeat = time.Now() // attach what the routes hold at once (after a restart)
	return nil
}

// HandleMessage handles a message from the daemon: a request behind its
// caller's routing frames, or a single-frame control message.
func (h *member) HandleMessage(l *poller.Loop[Cmd], _ int, frames [][]byte) {
	if len(frames) == 1 {
		h.control(l, frames[0])
		return
	}
	h.request(l, frames, false)
}

// HandleCommand runs a command.
func (h *member) HandleCommand(l *poller.Loop[Cmd], c Cmd) {
	if h.command(l, c) {
		return
	}
	if c, ok := c.(*attachCmd); ok {
		h.attach(l, c)
	}
}

// Deadline is when the loop next has timed work: retrying waiting replies
// or the held direct cast, or the heartbeat.
func (h *member) Deadline() time.Time {
	return sooner(h.heldDeadline(), sooner(h.rq.deadline(), h.nextBeat))
}

// HandleTimer retries the waiting replies and sends the heartbeat that
// keeps the servers attached to the daemon.
func (h *member) HandleTimer(l *poller.Loop[Cmd], now time.Time) {
	h.rq.retry(l, now)
	h.heldTimer(l, now)
	if !now.Before(h.nextBeat) {
		h.heartbeat(l, now)
	}
}

// Shutdown fails the commands waiting for the daemon; see core.shutdown.
func (h *member) Shutdown(l *poller.Loop[Cmd], pending []Cmd, cause error) {
	h.shutdown(l, pending, cause)
	for _, c := range h.pending {
		c.done <- attachResult{err: ErrStopped}
	}
}

// attach runs an attachCmd.
func (h *member) attach(l *poller.Loop[Cmd], c *attachCmd) {
	body, err := envelope.Encode(&c.msg)
	if err != nil {
		c.done <- attachResult{err: err}
		return
	}
	if err := l.Send(0, body); err != nil {
		c.done <- attachResult{err: err}
		return
	}
	if c.msg.ID.IsZero() {
		return // nobody waits for the answer
	}
	if h.pending == nil {
		h.pending = make(map[envelope.ID]*attachCmd)
	}
	h.pending[c.msg.ID] = c
}

// control handles a single-frame message from the daemon.
func (h *member) control(l *poller.Loop[Cmd], body []byte) {
	var m envelope.Message
	if err := envelope.DecodeInto(&m, body); err != nil {
		h.p.counters.Malformed.Add(1)
		return
	}
	switch m.Kind {
	case envelope.KindCast:
		h.direct(l, 0, &m)
	case envelope.KindFanout:
		h.deliverFanout(l, 0, &m)
	case envelope.KindPing:
		// The daemon checking that this member is still there.
	case envelope.KindAck:
		h.acked(&m)
	default:
		h.p.counters.WrongKind.Add(1)
	}
}

// acked reports the daemon's ACK m to the command waiting for it.
func (h *member) acked(m *envelope.Message) {
	c := h.pending[m.ID]
	if c == nil {
		return // the ACK of a heartbeat, or of a command that gave up
	}
	delete(h.pending, m.ID)
	switch m.Code {
	case envelope.CodeOK:
		node, err := nodeFromMeta(m.Meta)
		if c.msg.Topic != "" {
			err = nil // only a hello carries the node
		}
		c.done <- attachResult{node: node, err: err}
	case envelope.CodeConflict:
		c.done <- attachResult{err: fmt.Errorf("%w: %s", ErrDuplicate, m.ErrMsg)}
	case envelope.CodeShuttingDown:
		c.done <- attachResult{err: fmt.Errorf("%w: %s", ErrDaemonBusy, m.ErrMsg)}
	default:
		c.done <- attachResult{err: fmt.Errorf("proxy: daemon refused %s: %s: %s", c.msg.Kind, m.Code, m.ErrMsg)}
	}
}

// heartbeat repeats the ATTACH of every local server, and forgets commands
// whose callers stopped waiting.
func (h *member) heartbeat(l *poller.Loop[Cmd], now time.Time) {
	h.nextBeat = now.Add(h.every)
	for id, c := range h.pending {
		if now.After(c.expires) {
			delete(h.pending, id)
			c.done <- attachResult{err: fmt.Errorf("%w at %s: no answer to %s by %v", ErrNoDaemon, h.endpoint, c.msg.Kind, c.expires.Format(time.RFC3339))}
		}
	}
	h.p.routes.Each(func(key directory.Key, srv Server) {
		// A zero id: the daemon does not acknowledge heartbeats.
		m := envelope.Message{Kind: envelope.KindAttach, Exchange: key.Exchange, Topic: key.Topic, Server: srv.Name()}
		if body, err := envelope.Encode(&m); err == nil {
			_ = l.TrySend(0, body) // a full pipe: the next heartbeat tries again
		}
	})
}

// Meta keys of the daemon's answer to a hello.
const (
	metaHost   = "host"
	metaCall   = "call"
	metaFanout = "fanout"
	metaNotify = "notify"
	metaCast   = "cast"
	metaCurve  = "curve"
)

func nodeMeta(n directory.Node) map[string]string {
	return map[string]string{
		metaHost: n.Host, metaCall: strconv.Itoa(n.CallPort), metaFanout: strconv.Itoa(n.FanoutPort),
		metaNotify: strconv.Itoa(n.NotifyPort), metaCast: strconv.Itoa(n.CastPort), metaCurve: n.CurveKey,
	}
}

func nodeFromMeta(m map[string]string) (directory.Node, error) {
	n := directory.Node{Host: m[metaHost], CurveKey: m[metaCurve]}
	for k, p := range map[string]*int{metaCall: &n.CallPort, metaFanout: &n.FanoutPort, metaNotify: &n.NotifyPort, metaCast: &n.CastPort} {
		v, err := strconv.Atoi(m[k])
		if err != nil {
			return n, fmt.Errorf("proxy: daemon sent a bad %s port %q", k, m[k])
		}
		*p = v
	}
	if n.Host == "" || n.CallPort == 0 {
		return n, fmt.Errorf("proxy: daemon sent no node")
	}
	return n, nil
}
