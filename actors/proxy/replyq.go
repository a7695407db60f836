package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/poller"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// trySender is the part of a poller.Loop a replyQueue uses, whatever the
// loop's command type.
type trySender interface {
	TrySend(i int, frames ...[]byte) error
}

// replyQueue sends replies on a ROUTER socket without ever holding back the
// replies to other callers. The embedded proxy uses one on its call port,
// the proxy daemon one on its public port. Loop goroutine only.
//
// With ROUTER_MANDATORY, libzmq refuses a message whose caller's pipe is
// full (EAGAIN) instead of dropping it silently. That happens for a moment
// to a healthy caller with many calls in flight (libzmq returns write
// credit in batches), and for good to a caller that does not read. So the
// reply waits in that caller's own queue, in order, and is retried on a
// tickless backoff (1 ms doubling to 50 ms, reset on progress); it is
// dropped, counted and logged only when its caller has stopped waiting
// (expires), or the caller has maxWaitingPerPeer replies waiting. A caller
// that is gone (EHOSTUNREACH) has its reply dropped and counted at once.
type replyQueue struct {
	sock     int // the ROUTER's index in its loop
	counters *Counters
	log      *slog.Logger

	waiting    map[string][]queuedReply // per caller identity, in order
	n          int                      // replies waiting, all callers
	retryAt    time.Time                // next retry; zero: none
	retryEvery time.Duration            // current backoff
}

type queuedReply struct {
	frames  [][]byte
	expires time.Time
}

// Flow control of replies (see replyQueue).
const (
	// DefaultReplyTTL is how long a reply without a deadline (an ACK, or a
	// reply to a call sent without one) may wait for its caller's pipe.
	DefaultReplyTTL = 5 * time.Second
	// maxWaitingPerPeer bounds the replies waiting for one caller.
	maxWaitingPerPeer = 4096
	retryMin          = time.Millisecond
	retryMax          = 50 * time.Millisecond
)

// send sends frames (the caller's identity first) or queues them behind
// the caller's earlier replies.
func (q *replyQueue) send(l trySender, frames [][]byte, expires time.Time) {
	if q.n > 0 {
		if w, ok := q.waiting[string(frames[0])]; ok {
			q.wait(string(frames[0]), w, frames, expires)
			return
		}
	}
	err := l.TrySend(q.sock, frames...)
	switch {
	case err == nil:
		q.counters.Replies.Add(1)
	case errors.Is(err, poller.ErrWouldBlock):
		q.wait(string(frames[0]), q.waiting[string(frames[0])], frames, expires)
	default:
		q.drop(err)
	}
}

// answer sends the answer to req (see answerFrames), if one is due.
func (q *replyQueue) answer(l trySender, routing [][]byte, req *envelope.Message, code envelope.Code, text string) {
	if frames := answerFrames(routing, req, code, text); frames != nil {
		q.send(l, frames, expiry(req))
	}
}

// orReplyTTL is expires, or DefaultReplyTTL from now for a caller without
// a deadline (zero).
func orReplyTTL(expires time.Time) time.Time {
	if expires.IsZero() {
		return time.Now().Add(DefaultReplyTTL)
	}
	return expires
}

// wait queues a reply for a caller whose pipe is full.
func (q *replyQueue) wait(peer string, w []queuedReply, frames [][]byte, expires time.Time) {
	if len(w) >= maxWaitingPerPeer {
		q.drop(fmt.Errorf("%d replies already waiting for this caller", len(w)))
		return
	}
	expires = orReplyTTL(expires)
	if q.waiting == nil {
		q.waiting = make(map[string][]queuedReply)
	}
	q.waiting[peer] = append(w, queuedReply{frames: frames, expires: expires})
	q.n++
	q.counters.Waited.Add(1)
	if q.retryAt.IsZero() {
		q.retryEvery = retryMin
		q.retryAt = time.Now().Add(q.retryEvery)
	}
}

// drop counts and logs (at the 1st, 2nd, 4th, 8th... drop: visible, never a
// flood) a reply that cannot be delivered.
func (q *replyQueue) drop(err error) {
	if n := q.counters.SendFailed.Add(1); n&(n-1) == 0 {
		q.log.Warn("reply dropped: caller gone or not reading", "err", err, "dropped_total", n)
	}
}

// deadline is when the waiting replies are retried next (zero: never).
func (q *replyQueue) deadline() time.Time { return q.retryAt }

// sooner returns the earlier of a retry deadline d (zero: none) and t.
func sooner(d, t time.Time) time.Time {
	if !d.IsZero() && d.Before(t) {
		return d
	}
	return t
}

// retry sends the waiting replies that can go now, each caller's in order,
// and drops those whose caller stopped waiting.
func (q *replyQueue) retry(l trySender, now time.Time) {
	if q.retryAt.IsZero() || now.Before(q.retryAt) {
		return
	}
	progressed := false
	for peer, w := range q.waiting {
		for len(w) > 0 {
			r := w[0]
			if now.After(r.expires) {
				q.drop(fmt.Errorf("caller stopped waiting at %v", r.expires.Format(time.RFC3339Nano)))
			} else if err := l.TrySend(q.sock, r.frames...); errors.Is(err, poller.ErrWouldBlock) {
				break
			} else if err != nil {
				q.drop(err)
			} else {
				q.counters.Replies.Add(1)
				progressed = true
			}
			w[0] = queuedReply{}
			w = w[1:]
			q.n--
		}
		if len(w) == 0 {
			delete(q.waiting, peer)
		} else {
			q.waiting[peer] = w
		}
	}
	switch {
	case q.n == 0:
		q.retryAt = time.Time{}
		return
	case progressed:
		q.retryEvery = retryMin
	default:
		q.retryEvery = min(2*q.retryEvery, retryMax)
	}
	q.retryAt = now.Add(q.retryEvery)
}
