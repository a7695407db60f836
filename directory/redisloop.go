package directory

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// The background side of Redis: two goroutines, started by the first
// Lookup or Watch and stopped by Close.
//
//   - receive owns the change subscription (Redis.ps): it reads
//     notifications and (re)subscription confirmations, pings an idle
//     subscription and replaces a dead one. It never reads Redis; it only
//     records work in Redis.pending / Redis.resync and wakes the loop.
//   - loop does that work: re-reads notified keys, re-checks every cached
//     key's version after a (re)subscription and every PollInterval, and
//     re-reads a key when its earliest cached entry expires.

// Backoff of the subscription after a failure.
const (
	minSubBackoff = 50 * time.Millisecond
	maxSubBackoff = time.Second
)

// startLocked starts the background goroutines once. r.mu must be held
// and r not closed.
func (r *Redis) startLocked() {
	if r.started {
		return
	}
	r.started = true
	r.ps = r.client.Subscribe(r.runCtx) // no channels: no I/O yet
	r.routines.Go(r.receive)
	r.routines.Go(r.loop)
}

// receive runs the change subscription until Close.
func (r *Redis) receive() {
	backoff := minSubBackoff
	pinged := false        // a ping is outstanding on an idle subscription
	var with *redis.PubSub // the PubSub that SUBSCRIBE was sent on
	for {
		ps := r.pubSub()
		if ps == nil {
			return // closed
		}
		if ps != with {
			// Records the channel even if it fails; a failure shows up in
			// Receive, which then reconnects and subscribes again.
			with = ps
			ctx, cancel := context.WithTimeout(r.runCtx, r.opTO)
			_ = ps.Subscribe(ctx, r.changes)
			cancel()
		}
		msg, err := ps.ReceiveTimeout(r.runCtx, r.poll)
		if r.isClosed() {
			return
		}
		if err != nil {
			if isTimeout(err) && !pinged {
				pinged = true
				ctx, cancel := context.WithTimeout(r.runCtx, r.opTO)
				err = ps.Ping(ctx)
				cancel()
				if err == nil {
					continue // the Pong arrives through Receive
				}
			}
			// Broken, or silent after a ping: go-redis reconnects on the
			// next Receive; a silent (half-open) one is replaced.
			pinged = false
			r.subscriptionFailed(err)
			if isTimeout(err) {
				r.replacePubSub()
			}
			if !r.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, maxSubBackoff)
			continue
		}
		pinged = false
		backoff = minSubBackoff
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == r.changes {
				r.subscriptionConfirmed()
			}
		case *redis.Message:
			r.notified(m.Payload)
		case *redis.Pong:
		}
	}
}

// pubSub returns the current subscription, nil after Close.
func (r *Redis) pubSub() *redis.PubSub {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ps
}

// replacePubSub closes the current subscription and starts a new one
// (receive subscribes it).
func (r *Redis) replacePubSub() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.ps == nil {
		return
	}
	_ = r.ps.Close()
	r.ps = r.client.Subscribe(r.runCtx) // receive subscribes it
}

// sleep waits d; false if Close happened first.
func (r *Redis) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.done:
		return false
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// subscriptionFailed marks the cache untrusted until the subscription is
// back, and records the outage.
func (r *Redis) subscriptionFailed(err error) {
	r.errs.Add(1)
	r.mu.Lock()
	r.subLive = false
	r.gen++
	r.mu.Unlock()
	r.unreachable(err)
}

// subscriptionConfirmed marks the subscription live and makes the loop
// re-check every cached key, since notifications may have been missed.
func (r *Redis) subscriptionConfirmed() {
	r.mu.Lock()
	if r.subscribed {
		r.resubscribes.Add(1)
	}
	r.subscribed = true
	r.subLive = true
	r.resync = true
	r.resyncForce = true
	r.wakeLocked()
	r.mu.Unlock()
	r.reachable()
}

// notified queues a re-read of the key named by a notification.
func (r *Redis) notified(id string) {
	r.notifications.Add(1)
	k, ok := parseTargetID(id)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cache[k] != nil {
		r.pending[k] = struct{}{}
		r.wakeLocked()
	}
}

// loop does the cache work until Close.
func (r *Redis) loop() {
	poll := time.NewTicker(r.poll)
	defer poll.Stop()
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	for {
		if d, ok := r.nextDue(); ok {
			expiry.Reset(max(d, 0))
		} else {
			expiry.Stop()
		}
		select {
		case <-r.done:
			return
		case <-r.wake:
		case <-expiry.C:
		case <-poll.C:
			r.polls.Add(1)
			r.mu.Lock()
			r.resync = true
			r.mu.Unlock()
		}
		r.work()
	}
}

// nextDue returns the time until the earliest cacheEntry.due.
func (r *Redis) nextDue() (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var first time.Time
	for _, c := range r.cache {
		if !c.due.IsZero() && (first.IsZero() || c.due.Before(first)) {
			first = c.due
		}
	}
	return time.Until(first), !first.IsZero()
}

// retryDelay is how long the loop waits before re-reading a key whose
// re-read failed.
func (r *Redis) retryDelay() time.Duration { return min(r.poll, time.Second) }

// work re-reads the pending and due keys, after a version re-check of all
// cached keys if one is requested.
func (r *Redis) work() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	resync, force := r.resync, r.resyncForce
	r.resync, r.resyncForce = false, false
	keys := make(map[Key]bool, len(r.pending)) // key → force
	for k := range r.pending {
		keys[k] = false
	}
	clear(r.pending)
	now := time.Now()
	for k, c := range r.cache {
		if !c.due.IsZero() && !now.Before(c.due) {
			keys[k] = false
			c.due = time.Time{} // set again by the re-read
		}
	}
	r.mu.Unlock()

	if resync {
		stale, err := r.checkVersions(force)
		if err != nil {
			r.retryLater(keys)
			return
		}
		for k, f := range stale {
			keys[k] = keys[k] || f
		}
	}
	for k, f := range keys {
		if err := r.refresh(k, f); err != nil && errors.Is(err, ErrUnavailable) {
			r.retryLater(keys) // do not wait OpTimeout for every key
			return
		}
	}
}

// retryLater makes the loop re-read keys after retryDelay.
func (r *Redis) retryLater(keys map[Key]bool) {
	at := time.Now().Add(r.retryDelay())
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range keys {
		if c := r.cache[k]; c != nil && (c.due.IsZero() || c.due.After(at)) {
			c.due = at
		}
	}
}

// checkVersions reads the version of every cached key in one pipeline. A
// key whose version matches is marked trusted (if the subscription is live
// and nothing failed meanwhile); the others are returned for a re-read,
// forced if the version went down or force is set.
func (r *Redis) checkVersions(force bool) (map[Key]bool, error) {
	r.mu.Lock()
	gen, live := r.gen, r.subLive
	keys := make([]Key, 0, len(r.cache))
	writes := make(map[Key]uint64, len(r.cache))
	for k, c := range r.cache {
		keys = append(keys, k)
		writes[k] = c.writes
	}
	r.mu.Unlock()
	if len(keys) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(r.runCtx, r.opTO)
	defer cancel()
	pipe := r.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, targetKeys(r.prefix, targetID(k))[2])
	}
	_, _ = pipe.Exec(ctx) // errors are per command; redis.Nil is a missing key
	versions := make([]int64, len(keys))
	for i, cmd := range cmds {
		v, err := cmd.Int64()
		if errors.Is(err, redis.Nil) {
			v, err = 0, nil
		}
		if err != nil {
			return nil, r.failed(r.runCtx, "check versions", err)
		}
		versions[i] = v
	}
	r.reachable()

	stale := make(map[Key]bool)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, k := range keys {
		c := r.cache[k]
		switch {
		case c == nil:
		case !c.filled || c.version != versions[i]:
			stale[k] = force || c.filled && versions[i] < c.version
		case c.version < c.floor || c.writes != writes[k]:
			// One of our own writes came after this version was read:
			// the cache must be re-read, not trusted.
			stale[k] = false
		case live && r.subLive && gen == r.gen:
			c.gen = gen
		}
	}
	return stale, nil
}

// refresh re-reads k and stores the result (see store).
func (r *Redis) refresh(k Key, force bool) error {
	r.mu.Lock()
	gen, live := r.gen, r.subLive
	var writes uint64
	if c := r.cache[k]; c != nil {
		writes = c.writes
	}
	r.mu.Unlock()
	res, err := r.fetch(r.runCtx, k)
	if err != nil {
		err = r.failed(r.runCtx, "refresh "+k.String(), err)
		r.retryLater(map[Key]bool{k: false})
		return err
	}
	r.reachable()
	r.store(k, res, gen, live, force, writes)
	return nil
}
