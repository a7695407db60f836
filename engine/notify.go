package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// NotifyExchange is the directory namespace of notification listeners: a
// listener of topic T in pool P registers as server "P/<id>" of
// Key{Exchange: NotifyExchange, Topic: T}, on its node's notify port.
const NotifyExchange = "zmqmsg.notify"

// MetaNotificationID is the metadata key of a notification's id, the same
// in every pool's copy.
const MetaNotificationID = "notification_id"

// PoolOf returns the pool of a listener's server name ("pool/id").
func PoolOf(server string) string {
	if i := strings.LastIndexByte(server, '/'); i >= 0 {
		return server[:i]
	}
	return server
}

// notifier sends NOTIFYs: an acknowledged cast to one member of each pool
// of listeners.
type notifier struct {
	*caster
	notifications, unheard, failures atomic.Uint64
}

func (n *notifier) addStats(st *Stats) {
	st.Notifications, st.NotificationsUnheard, st.NotifyFailures = n.notifications.Load(), n.unheard.Load(), n.failures.Load()
}

// Notify sends a notification (payload: the encoded notification) to every
// pool of listeners of topic, one copy per pool: an acknowledged cast to one
// member of the pool, chosen round robin so that members share the load. A
// member that does not acknowledge (after the AckPolicy's retries) is
// replaced by the next member of its pool, so one member's death loses
// nothing; a member that received a notification whose ACK was lost runs it
// once (de-duplication by id), but the next member may run it too: delivery
// is at least once. Returns nil when every pool has it (or no pool listens:
// counted in NotificationsUnheard), a *NotifyError naming the pools no
// member took it for, or ctx.Err().
func (n *notifier) Notify(ctx context.Context, topic string, meta map[string]string, flags envelope.Flags, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.closed.Load() {
		return ErrClosed
	}
	key := directory.Key{Exchange: NotifyExchange, Topic: topic}
	if err := (Target{Exchange: key.Exchange, Topic: topic}).Validate(); err != nil {
		return err
	}
	if max := n.cfg.MaxMessageSize; max > 0 && len(payload) > max {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), max)
	}
	user := MetaOf(ctx)
	if err := checkMeta(user); err != nil {
		return err
	}
	ks, err := n.res.state(ctx, key)
	if err != nil {
		return n.ctxError(err)
	}
	if err := ks.unavailable(); err != nil {
		return err // not "unheard": nobody knows who listens
	}
	pools := ks.notifyPools()
	n.notifications.Add(1)
	if len(pools) == 0 {
		if u := n.unheard.Add(1); u&(u-1) == 0 {
			n.rt.log.Info("notification to a topic nobody listens to", append(envelope.TraceAttrs(user), "topic", topic, "unheard_total", u)...)
		}
		return nil
	}
	// The notification's id travels in the metadata, the same for every
	// pool; each pool's copy has a message id of its own, for its ACKs and
	// the members' de-duplication.
	withID := make(map[string]string, len(meta)+len(user)+1)
	for k, v := range user {
		withID[k] = v
	}
	for k, v := range meta {
		withID[k] = v
	}
	withID[MetaNotificationID] = envelope.NewID().String()
	m := envelope.Message{Kind: envelope.KindNotify, Flags: flags, Exchange: key.Exchange, Topic: topic, Meta: withID, Payload: payload}
	start := ks.rr.Add(1)
	// Every pool but the last gets a goroutine; the caller delivers to the
	// last itself (one pool: no goroutine at all).
	errs := make([]error, len(pools))
	var done chan int
	if len(pools) > 1 {
		done = make(chan int, len(pools)-1)
	}
	closing := false
	for i := range pools[:len(pools)-1] {
		m := m
		m.ID = envelope.NewID()
		if !n.rt.routines.Go(func() { errs[i] = n.notifyPool(ctx, m, pools[i].members, start); done <- i }) {
			errs[i], closing = ErrClosed, true
			done <- i
		}
	}
	last := len(pools) - 1
	if closing {
		errs[last] = ErrClosed // closing: no pool is tried any more
	} else {
		m.ID = envelope.NewID()
		errs[last] = n.notifyPool(ctx, m, pools[last].members, start)
	}
	for range pools[:last] {
		<-done
	}
	var failed map[string]error
	for i, err := range errs {
		if err != nil {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[pools[i].name] = err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(failed) > 0 {
		n.failures.Add(uint64(len(failed)))
		n.rt.log.Warn("notification not delivered to every pool", append(envelope.TraceAttrs(user), "topic", topic, "failed", len(failed), "pools", len(pools))...)
		return &NotifyError{Pools: failed}
	}
	return nil
}

// notifyPool delivers m to one member of a pool, trying the next member
// when one does not acknowledge.
func (n *notifier) notifyPool(ctx context.Context, m envelope.Message, members []poolMember, start uint64) error {
	var last error
	for i := range members {
		r := &members[(start+uint64(i))%uint64(len(members))]
		d := n.dealers.lookup(r.notifyKey)
		var err error
		if d == nil {
			d, err = n.dealerAt(ctx, r.Node, r.notifyKey, r.tag, r.Node.NotifyEndpoint)
		}
		if err != nil {
			last = err
			continue
		}
		m.Server = r.Server
		body, err := envelope.Encode(&m)
		if err != nil {
			return fmt.Errorf("zmqmsg: encode notification: %w", err)
		}
		if last = n.castAcked(ctx, d, &m, body, r.tag); last == nil {
			return nil
		}
		if ctx.Err() != nil || errors.Is(last, ErrClosed) || errors.Is(last, ErrTimeout) {
			// ErrTimeout: the member has it and was still running it; the
			// next member would run it a second time.
			return last
		}
	}
	return last
}

// pool is one pool of listeners of a topic, and its members.
type pool struct {
	name    string
	members []poolMember
}

// poolMember is a listener, with the name and key of its node's notify
// socket.
type poolMember struct {
	route
	tag       string // nodeID + "/notify"
	notifyKey string // socketKey(tag, Node): the notify DEALER's, not the route's sockKey
}

// notifyPools are the pools of a key's listeners (on a node with a notify
// port), in the order the directory listed their first members.
type notifyPools struct {
	src   *[]route // the entries they were grouped from
	pools []pool
}

// notifyPools groups the key's entries by pool, once per refresh of the
// entries (a concurrent caller may group them too: same result).
func (ks *keyState) notifyPools() []pool {
	src := ks.entries.Load()
	if np := ks.pools.Load(); np != nil && np.src == src {
		return np.pools
	}
	np := &notifyPools{src: src}
	if src != nil {
		for _, r := range *src {
			if r.Node.NotifyPort == 0 {
				continue
			}
			name := PoolOf(r.Server)
			i := slices.IndexFunc(np.pools, func(p pool) bool { return p.name == name })
			if i < 0 {
				i = len(np.pools)
				np.pools = append(np.pools, pool{name: name})
			}
			tag := r.nodeID + "/notify"
			np.pools[i].members = append(np.pools[i].members, poolMember{route: r, tag: tag, notifyKey: socketKey(tag, r.Node)})
		}
	}
	ks.pools.Store(np)
	return np.pools
}
