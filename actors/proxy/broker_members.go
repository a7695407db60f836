package proxy

import (
	"fmt"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// The broker's members: which service process serves which (exchange,
// topic, server), learnt from their ATTACH and DETACH messages and
// heartbeats, and dropped when a process is lost.

// probeFor is how long the broker keeps probing its members after a member
// connection dropped: libzmq may detach the dead pipe a moment after the
// event.
const probeFor = 2 * time.Second

// bMember is a service process attached to the broker.
type bMember struct {
	id      string
	seen    time.Time
	servers map[bServer]time.Time // -> when its last ATTACH (or heartbeat) came
}

// bServer is one server a member serves.
type bServer struct {
	key  directory.Key
	name string
}

// bRoute are the members serving one key.
type bRoute struct {
	entries []bEntry
	rr      uint // picks so far
}

// bEntry is one server of a key, and its member.
type bEntry struct {
	m    *bMember
	name string
}

// pick returns the member entry for a request to key (and name).
func (r *broker) pick(key directory.Key, name string) (bEntry, bool) {
	rt := r.routes[key]
	if rt == nil || len(rt.entries) == 0 {
		return bEntry{}, false
	}
	if name != "" {
		for _, e := range rt.entries {
			if e.name == name {
				return e, true
			}
		}
		return bEntry{}, false
	}
	e := rt.entries[rt.rr%uint(len(rt.entries))]
	rt.rr++
	return e, true
}

// control handles an ATTACH or DETACH from member id.
func (r *broker) control(l *poller.Loop[BrokerCmd], id string, body []byte) {
	var m envelope.Message
	if err := envelope.DecodeInto(&m, body); err != nil {
		r.b.counters.Malformed.Add(1)
		return
	}
	ack := envelope.Message{Kind: envelope.KindAck, ID: m.ID}
	switch m.Kind {
	case envelope.KindAttach:
		switch {
		case m.Topic == "":
			// A hello. The node is known once every port is bound; a
			// hello before that is told to try again.
			if n := r.cfg.Node(); n.CallPort != 0 {
				ack.Meta = nodeMeta(n)
			} else {
				ack.Code, ack.ErrMsg = envelope.CodeShuttingDown, "daemon starting"
			}
		case m.Server == "":
			ack.Code, ack.ErrMsg = envelope.CodeMalformed, "ATTACH without a server name"
		default:
			if err := r.attach(l, id, directory.Key{Exchange: m.Exchange, Topic: m.Topic}, m.Server); err != nil {
				ack.Code, ack.ErrMsg = envelope.CodeConflict, err.Error()
			}
		}
	case envelope.KindDetach:
		if mb := r.members[id]; mb != nil {
			r.detach(l, mb, bServer{directory.Key{Exchange: m.Exchange, Topic: m.Topic}, m.Server})
		}
	default:
		r.b.counters.WrongKind.Add(1)
		return
	}
	if m.ID.IsZero() {
		return // a heartbeat: no answer
	}
	if ack.Code != envelope.CodeOK {
		ack.ErrType = ack.Code.String()
	}
	if b, err := envelope.Encode(&ack); err == nil {
		if err := l.TrySend(r.back, []byte(id), b); err != nil {
			r.b.counters.SendFailed.Add(1)
		}
	}
}

// attach routes (key, name) to member id. A name served by another live
// member is a conflict; one served by a member whose pipe has vanished (a
// process restarted before its predecessor's TTL ran out) is taken over.
func (r *broker) attach(l *poller.Loop[BrokerCmd], id string, key directory.Key, name string) error {
	rt := r.routes[key]
	if rt != nil {
		for _, e := range rt.entries {
			if e.name != name {
				continue
			}
			if e.m.id == id {
				e.m.servers[bServer{key, name}] = time.Now() // a heartbeat
				return nil
			}
			if r.alive(l, e.m.id) {
				r.b.counters.Conflicts.Add(1)
				return fmt.Errorf("server %q of %s is served by another process of this node", name, key)
			}
			rt = r.routes[key] // lose changed the routes
			break
		}
	}
	mb := r.members[id]
	if mb == nil {
		mb = &bMember{id: id, seen: time.Now(), servers: make(map[bServer]time.Time)}
		r.members[id] = mb
		r.b.members.Store(int64(len(r.members)))
		r.b.log.Info("service process attached", "member", fmt.Sprintf("%x", id))
	}
	mb.servers[bServer{key, name}] = time.Now()
	if rt == nil {
		rt = &bRoute{}
		r.routes[key] = rt
		if r.fanSock >= 0 {
			if err := l.Send(r.fanSock, subFrame(key, true)); err != nil {
				r.b.log.Warn("fanout subscribe failed", "key", key.String(), "err", err)
			}
		}
	}
	rt.entries = append(rt.entries, bEntry{m: mb, name: name})
	return nil
}

// alive probes member id: a PING to a member whose pipe has vanished fails
// with EHOSTUNREACH, and the member is dropped.
func (r *broker) alive(l *poller.Loop[BrokerCmd], id string) bool {
	ping, err := envelope.Encode(&envelope.Message{Kind: envelope.KindPing})
	if err != nil {
		return true
	}
	if err := l.TrySend(r.back, []byte(id), ping); unreachable(err) {
		r.lose(l, id, "its pipe vanished")
		return false
	}
	return true
}

// detach removes one server of member mb.
func (r *broker) detach(l *poller.Loop[BrokerCmd], mb *bMember, s bServer) {
	if _, ok := mb.servers[s]; !ok {
		return
	}
	delete(mb.servers, s)
	rt := r.routes[s.key]
	if rt == nil {
		return
	}
	kept := rt.entries[:0]
	for _, e := range rt.entries {
		if e.m != mb || e.name != s.name {
			kept = append(kept, e)
		}
	}
	clear(rt.entries[len(kept):])
	rt.entries = kept
	if len(mb.servers) == 0 {
		// A member with nothing to serve is forgotten; its next ATTACH
		// makes it a member again.
		delete(r.members, mb.id)
		r.b.members.Store(int64(len(r.members)))
	}
	if len(kept) == 0 {
		delete(r.routes, s.key)
		if r.fanSock >= 0 {
			if err := l.Send(r.fanSock, subFrame(s.key, false)); err != nil {
				r.b.log.Warn("fanout unsubscribe failed", "key", s.key.String(), "err", err)
			}
		}
	}
}

// lose drops member id, every route to it, and answers the requests it
// had. A member that detached its last server (a stopping process) is no
// longer in members but may still have requests in flight: it is lost all
// the same.
func (r *broker) lose(l *poller.Loop[BrokerCmd], id, why string) {
	m := r.members[id]
	if m != nil {
		for s := range m.servers {
			r.detach(l, m, s)
		}
		delete(r.members, id) // if detach has not already
		r.b.members.Store(int64(len(r.members)))
	}
	// Its requests will never be answered: tell their callers now. They
	// may have run (the member may have died after running one).
	failed := 0
	for rid, f := range r.b.inflight {
		if f.member == id {
			delete(r.b.inflight, rid)
			r.answerLost(l, rid, f, why)
			failed++
		}
	}
	if m == nil && failed == 0 {
		return
	}
	r.b.counters.FailedLost.Add(uint64(failed))
	r.b.nInflight.Store(int64(len(r.b.inflight)))
	r.checkDrained()
	n := r.b.counters.MembersLost.Add(1)
	r.b.log.Warn("service process lost: its servers are no longer routed", "member", fmt.Sprintf("%x", id), "why", why, "failed", failed, "lost_total", n)
}

// probeMembers probes every member, and every process that detached its
// last server but still has requests in flight (see alive).
func (r *broker) probeMembers(l *poller.Loop[BrokerCmd]) {
	ids := make(map[string]struct{}, len(r.members))
	for id := range r.members {
		ids[id] = struct{}{}
	}
	for _, f := range r.b.inflight {
		ids[f.member] = struct{}{}
	}
	for id := range ids {
		r.alive(l, id)
	}
}

// sweepMembers drops the members silent for MemberTTL, and the servers a
// member no longer repeats in its heartbeats (an ATTACH that arrived after
// its Serve gave up, for instance).
func (r *broker) sweepMembers(l *poller.Loop[BrokerCmd], now time.Time) {
	for _, m := range r.members {
		if now.Sub(m.seen) > r.cfg.MemberTTL {
			r.lose(l, m.id, fmt.Sprintf("silent for %v", now.Sub(m.seen).Round(time.Millisecond)))
			continue
		}
		for s, seen := range m.servers {
			if now.Sub(seen) > r.cfg.MemberTTL {
				r.b.log.Info("server no longer attached by its process: unrouted", "key", s.key.String(), "server", s.name)
				r.detach(l, m, s)
			}
		}
	}
}
