package socket

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/poller"
)

// PubCmd is a command for a Publisher socket actor. The interface is sealed.
type PubCmd interface{ isPubCmd() }

// Publish sends a fanout to the node once the node has subscribed to Topic
// (the topic frame). Done, if not nil, receives nil when the message is
// handed to libzmq, or ErrNotSubscribed if the node has not subscribed by
// Deadline; it must be buffered (capacity 1). Without Done nobody waits: a
// failure is only counted (PublisherCounters.NotSubscribed, Lost), and the
// loop returns the Publish to the pool once done with it.
type Publish struct {
	Topic    []byte
	Body     []byte
	Deadline time.Time
	Done     chan error
}

func (*Publish) isPubCmd() {}

var publishPool = sync.Pool{New: func() any { return new(Publish) }}

// NewPublish returns a Publish from a pool; Topic and Body are the
// caller's, and neither is written.
func NewPublish(topic, body []byte, deadline time.Time, done chan error) *Publish {
	c := publishPool.Get().(*Publish)
	c.Topic, c.Body, c.Deadline, c.Done = topic, body, deadline, done
	return c
}

// ReleasePublish returns c to the pool. Only for a Publish whose Done
// has been received from; the loop releases those without Done itself.
func ReleasePublish(c *Publish) {
	*c = Publish{}
	publishPool.Put(c)
}

// finish reports err to c's waiter, or, without one, counts a failure
// and releases c.
func (c *Publish) finish(err error, counters *PublisherCounters) {
	if c.Done != nil {
		c.Done <- err
		return
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrNotSubscribed):
	default:
		counters.Lost.Add(1)
	}
	ReleasePublish(c)
}

// Subscriptions are the topic frames a publisher's node has subscribed
// to, readable by any goroutine: the publisher loop publishes its view
// after each change. One value is shared by every incarnation of a
// publisher; a new loop starts with none.
type Subscriptions struct {
	topics atomic.Pointer[map[string]struct{}]
}

// Has reports whether the node had subscribed to topic at the loop's last
// change. A nil Subscriptions has nothing.
func (s *Subscriptions) Has(topic []byte) bool {
	if s == nil {
		return false
	}
	m := s.topics.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[string(topic)]
	return ok
}

// set publishes a copy of subs (nil: none).
func (s *Subscriptions) set(subs map[string]bool) {
	if s == nil {
		return
	}
	if len(subs) == 0 {
		s.topics.Store(nil)
		return
	}
	m := make(map[string]struct{}, len(subs))
	for t := range subs {
		m[t] = struct{}{}
	}
	s.topics.Store(&m)
}

// ErrNotSubscribed: the node did not subscribe to the topic in time: it
// does not serve it (any more), or it cannot be reached.
var ErrNotSubscribed = errors.New("socket: node not subscribed to the topic")

// PublisherCounters are shared by every incarnation of one publisher.
type PublisherCounters struct {
	Sent          atomic.Uint64 // fanouts handed to libzmq
	Parked        atomic.Uint64 // fanouts that waited for the node's subscription
	NotSubscribed atomic.Uint64 // fanouts failed because the node never subscribed
	Lost          atomic.Uint64 // fanouts without a waiter failed by the loop's end
	// HandshakeFailed counts failed CURVE handshakes with the node.
	HandshakeFailed atomic.Uint64
}

// Publisher is the client end of the FANOUT pipeline towards one node: an
// XPUB connected to the node proxy's XSUB. Through it the publisher sees
// which topics the node subscribes to (the node sends its subscriptions on
// every new connection), and it sends a fanout only to a node that has
// subscribed to its topic. A fanout sent before the subscription has
// arrived waits, in order, until it does or its deadline passes: a node
// whose server has started (and so subscribed) receives every fanout sent
// after that, however new its connection.
type Publisher struct {
	Endpoint string
	Options  Options
	Counters *PublisherCounters
	Subs     *Subscriptions // optional: the subscriptions, for other goroutines

	subs   map[string]bool       // topic frame -> subscribed; loop goroutine only
	parked map[string][]*Publish // topic frame -> fanouts waiting for it, in order
	watch  clientWatch           // CURVE: a refused handshake is tried again
}

// Setup creates the XPUB and connects it.
func (p *Publisher) Setup(l *poller.Loop[PubCmd]) error {
	p.subs = make(map[string]bool)
	p.parked = make(map[string][]*Publish)
	p.Subs.set(nil)
	// At the high-water mark, wait (in the loop's backlog) instead of
	// dropping silently.
	nodrop := func(z *zmq.Socket) error { return z.SetXpubNodrop(true) }
	var err error
	p.watch, err = connectClient(l, zmq.XPUB, "xpub", p.Endpoint, p.Options, nodrop)
	return err
}

// HandleMessage receives the node's subscriptions: 1 then the topic frame
// to subscribe, 0 then the topic frame to unsubscribe.
func (p *Publisher) HandleMessage(l *poller.Loop[PubCmd], sock int, frames [][]byte) {
	if p.watch.event(sock, frames, time.Now(), &p.Counters.HandshakeFailed) {
		return
	}
	if len(frames) != 1 || len(frames[0]) == 0 {
		return
	}
	topic := string(frames[0][1:])
	switch frames[0][0] {
	case 1:
		p.subs[topic] = true
		p.Subs.set(p.subs) // commands queued from now on follow the parked ones
		for _, c := range p.parked[topic] {
			p.send(l, c)
		}
		delete(p.parked, topic)
	case 0:
		delete(p.subs, topic)
		p.Subs.set(p.subs)
	}
}

// HandleCommand sends a fanout, or parks it until the node subscribes.
func (p *Publisher) HandleCommand(l *poller.Loop[PubCmd], c PubCmd) {
	pub, ok := c.(*Publish)
	if !ok {
		return
	}
	topic := string(pub.Topic)
	if p.subs[topic] && len(p.parked[topic]) == 0 {
		p.send(l, pub)
		return
	}
	p.Counters.Parked.Add(1)
	p.parked[topic] = append(p.parked[topic], pub)
}

// send sends c. It counts c first: a caller that did not wait may see the
// message run on its node before send returns.
func (p *Publisher) send(l *poller.Loop[PubCmd], c *Publish) {
	p.Counters.Sent.Add(1)
	err := l.Send(0, c.Topic, c.Body)
	if err != nil {
		p.Counters.Sent.Add(^uint64(0)) // not sent after all
	}
	c.finish(err, p.Counters)
}

// Deadline is the earliest deadline of a parked fanout, or of a refused
// connection's next try.
func (p *Publisher) Deadline() time.Time {
	d := p.watch.rh.Deadline()
	for _, q := range p.parked {
		for _, c := range q {
			if d.IsZero() || c.Deadline.Before(d) {
				d = c.Deadline
			}
		}
	}
	return d
}

// HandleTimer fails the parked fanouts whose deadline has passed, and tries
// a refused connection again when it is due.
func (p *Publisher) HandleTimer(l *poller.Loop[PubCmd], now time.Time) {
	if _, err := p.watch.rh.Reconnect(l.Socket(0), now); err != nil {
		p.Counters.HandshakeFailed.Add(1)
	}
	for topic, q := range p.parked {
		keep := q[:0]
		for _, c := range q {
			if now.Before(c.Deadline) {
				keep = append(keep, c)
				continue
			}
			p.Counters.NotSubscribed.Add(1)
			c.finish(ErrNotSubscribed, p.Counters)
		}
		if len(keep) == 0 {
			delete(p.parked, topic)
		} else {
			p.parked[topic] = keep
		}
	}
}

// Shutdown fails every fanout not sent.
func (p *Publisher) Shutdown(_ *poller.Loop[PubCmd], pending []PubCmd, cause error) {
	p.Subs.set(nil)
	err := stopErr(cause)
	for _, c := range pending {
		if pub, ok := c.(*Publish); ok {
			pub.finish(err, p.Counters)
		}
	}
	for _, q := range p.parked {
		for _, c := range q {
			c.finish(err, p.Counters)
		}
	}
}
