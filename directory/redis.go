package directory

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/zmqmsg/zmqmsg/internal/routine"
)

// More errors of the Redis directory; see also ErrClosed and ErrInvalid.
var (
	// ErrUnavailable is wrapped (together with the Redis client's error)
	// when Redis cannot be reached: Register and Deregister fail with it,
	// and Lookup does when it has nothing cached for the key.
	ErrUnavailable = errors.New("directory: redis unavailable")
	// ErrBadOptions is wrapped by NewRedis for unusable RedisOptions.
	ErrBadOptions = errors.New("directory: bad redis options")
)

// Defaults of RedisOptions.
const (
	DefaultRedisPrefix       = "zmqmsg"
	DefaultRedisOpTimeout    = time.Second
	DefaultRedisPollInterval = 5 * time.Second
)

// RedisOptions configures NewRedis. The mode follows from the fields:
// Sentinel when MasterName is set (Addrs are then the sentinels), Cluster
// when Cluster is set or Addrs has more than one address, else a single
// server at Addrs[0].
type RedisOptions struct {
	// Addrs are "host:port" addresses: of the server, of the sentinels
	// (with MasterName) or of some Cluster nodes. At least one.
	Addrs []string
	// MasterName selects Sentinel mode: the name the sentinels monitor.
	MasterName string
	// Cluster forces Cluster mode with a single address.
	Cluster bool
	// Username and Password authenticate to the data nodes (ACL user or
	// legacy requirepass when Username is empty).
	Username, Password string
	// SentinelPassword authenticates to the sentinels.
	SentinelPassword string
	// DB selects the database; must be 0 for Cluster.
	DB int
	// TLS, if non-nil, is used for every connection.
	TLS *tls.Config
	// Prefix starts every key and the changes channel; default "zmqmsg".
	// It must not contain '{' or '}' (they would break Cluster hash tags)
	// or white space.
	Prefix string
	// OpTimeout bounds every Redis call (dial, command, reply), also when
	// the caller's context has no deadline; default 1s.
	OpTimeout time.Duration
	// PollInterval is how often cached keys are re-checked even without a
	// change notification, and how long the change subscription may stay
	// silent before it is pinged; default 5s.
	PollInterval time.Duration
	// Logger receives outage transitions (Warn when Redis becomes
	// unreachable, Info when it is back); default slog.Default(). Passwords
	// are never logged.
	Logger *slog.Logger
}

// RedisStats are counters since NewRedis, returned by Redis.Stats.
type RedisStats struct {
	Lookups       uint64 // Lookup calls
	CacheHits     uint64 // Lookups answered from a trustworthy cache
	StaleServed   uint64 // Lookups answered from the cache because Redis failed
	Errors        uint64 // failed Redis calls, including the change subscription
	Outages       uint64 // transitions from reachable to unreachable
	Resubscribes  uint64 // change subscriptions re-established after a loss
	Polls         uint64 // periodic re-checks of the cached keys
	Notifications uint64 // change notifications received
}

// Redis is a Directory and Lister backed by Redis (standalone, Sentinel or
// Cluster), shared by every process that uses the same Redis and Prefix.
// See the package documentation ("Redis data model") for how it stores
// entries, caches lookups and behaves when Redis is down.
//
// Create it with NewRedis or Open. It starts two goroutines (the change
// subscription and the cache loop) on the first Lookup or Watch; Close
// stops them.
type Redis struct {
	client  redis.UniversalClient
	log     *slog.Logger
	addrs   string // for logs: the configured addresses, no credentials
	prefix  string
	changes string // the changes channel
	index   string // the set of target ids
	opTO    time.Duration
	poll    time.Duration

	runCtx   context.Context    // canceled by Close; parent of background calls
	cancel   context.CancelFunc // cancels runCtx
	done     chan struct{}      // closed by Close
	wake     chan struct{}      // capacity 1: the loop has pending work
	routines routine.Group      // the background goroutines

	lookups, cacheHits, staleServed, errs, outages,
	resubscribes, polls, notifications atomic.Uint64

	mu          sync.Mutex
	closed      bool
	started     bool                // background goroutines running
	ps          *redis.PubSub       // the change subscription; replaced when dead
	subLive     bool                // subscription confirmed, no error since
	subscribed  bool                // it was confirmed at least once
	gen         uint64              // trust generation: +1 on every Redis error or loss of the subscription
	down        bool                // Redis considered unreachable
	downSince   time.Time           // when the current (announced) outage started
	upSince     time.Time           // when the last outage ended
	endLogged   bool                // the end of the current outage was logged
	cache       map[Key]*cacheEntry // looked-up and watched keys
	pending     map[Key]struct{}    // keys the loop must re-read
	resync      bool                // the loop must re-check every cached key's version
	resyncForce bool                // that re-check follows a (re)subscription
}

// cacheEntry is the cached state of one Key. Guarded by Redis.mu.
type cacheEntry struct {
	filled   bool                       // entries and version hold a lookup result
	entries  []Entry                    // sorted; replaced, never modified in place
	version  int64                      // the target's version when read
	gen      uint64                     // Redis.gen when filled with a live subscription; 0: untrusted
	floor    int64                      // no result older than this version is stored (our own writes)
	writes   uint64                     // bumped by our own Register/Deregister: reads begun before are not stored
	due      time.Time                  // when the loop re-reads the key; zero: never
	watchers map[chan struct{}]struct{} // channels returned by Watch
}

// Redis implements Directory, Lister and Versioner.
var (
	_ Directory = (*Redis)(nil)
	_ Lister    = (*Redis)(nil)
	_ Versioner = (*Redis)(nil)
)

// NewRedis validates opts and returns a Redis directory. It does not
// contact Redis, so it succeeds while Redis is down: calls then fail with
// ErrUnavailable until Redis is reachable. Invalid options give an error
// wrapping ErrBadOptions.
func NewRedis(opts RedisOptions) (*Redis, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	uo := &redis.UniversalOptions{
		Addrs:                 opts.Addrs,
		MasterName:            opts.MasterName,
		IsClusterMode:         opts.Cluster,
		Username:              opts.Username,
		Password:              opts.Password,
		SentinelPassword:      opts.SentinelPassword,
		DB:                    opts.DB,
		TLSConfig:             opts.TLS,
		DialTimeout:           opts.OpTimeout,
		ReadTimeout:           opts.OpTimeout,
		WriteTimeout:          opts.OpTimeout,
		ContextTimeoutEnabled: true, // so that our deadlines bound reads too
		DialerRetries:         2,    // fail fast when nothing listens
		DialerRetryTimeout:    50 * time.Millisecond,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled, // Redis 7.0 has none
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Redis{
		client:  redis.NewUniversalClient(uo),
		log:     opts.Logger,
		addrs:   strings.Join(opts.Addrs, ","),
		prefix:  opts.Prefix,
		changes: opts.Prefix + ":changes",
		index:   opts.Prefix + ":targets",
		opTO:    opts.OpTimeout,
		poll:    opts.PollInterval,
		runCtx:  ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		gen:     1,
		cache:   make(map[Key]*cacheEntry),
		pending: make(map[Key]struct{}),
	}
	if opts.MasterName != "" {
		r.addrs = opts.MasterName + "@" + r.addrs
	}
	return r, nil
}

func (o *RedisOptions) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadOptions, fmt.Sprintf(format, args...))
	}
	if len(o.Addrs) == 0 {
		return bad("no address")
	}
	for _, a := range o.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return bad("address %q: %v", a, err)
		}
	}
	cluster := o.Cluster || o.MasterName == "" && len(o.Addrs) > 1
	switch {
	case o.Cluster && o.MasterName != "":
		return bad("both Cluster and MasterName set")
	case cluster && o.DB != 0:
		return bad("database %d with Cluster (only 0 exists)", o.DB)
	case o.DB < 0:
		return bad("negative database %d", o.DB)
	case strings.ContainsAny(o.Prefix, "{} \t\r\n"):
		return bad("prefix %q contains a brace or white space", o.Prefix)
	case o.OpTimeout < 0:
		return bad("negative OpTimeout %v", o.OpTimeout)
	case o.PollInterval < 0:
		return bad("negative PollInterval %v", o.PollInterval)
	}
	return nil
}

func (o *RedisOptions) setDefaults() {
	if o.Prefix == "" {
		o.Prefix = DefaultRedisPrefix
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = DefaultRedisOpTimeout
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultRedisPollInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Stats returns the counters so far.
func (r *Redis) Stats() RedisStats {
	return RedisStats{
		Lookups:       r.lookups.Load(),
		CacheHits:     r.cacheHits.Load(),
		StaleServed:   r.staleServed.Load(),
		Errors:        r.errs.Load(),
		Outages:       r.outages.Load(),
		Resubscribes:  r.resubscribes.Load(),
		Polls:         r.polls.Load(),
		Notifications: r.notifications.Load(),
	}
}

// Register adds or refreshes reg in Redis until ttl (rounded up to whole
// milliseconds) from now by Redis's clock; see Directory.Register. Other
// processes are notified when the server is new or moved, or when expired
// entries were pruned; not on a plain refresh. It waits for Redis, at most
// OpTimeout per call (two calls), and fails with an error wrapping
// ErrUnavailable when Redis cannot be reached.
func (r *Redis) Register(ctx context.Context, reg Registration, ttl time.Duration) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if err := reg.Validate(); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: ttl %v is not positive", ErrInvalid, ttl)
	}
	if r.isClosed() {
		return ErrClosed
	}
	ctx = orBackground(ctx)
	id := targetID(reg.Key)
	ms := int64(math.Ceil(float64(ttl) / float64(time.Millisecond)))
	res, err := r.runInts(ctx, registerScript, id, 3, reg.Server, encodeReg(reg.Node, reg.Methods), ms)
	if err != nil {
		return r.failed(ctx, "register "+reg.Key.String()+" "+reg.Server, err)
	}
	if res[2] == 1 {
		r.invalidate(reg.Key, res[0]) // read our own write on the next Lookup
	} else {
		r.refreshed(reg, time.Now().Add(time.Duration(ms)*time.Millisecond))
	}
	// The index lives in another slot in Cluster: a separate command, on
	// every Register so that List's pruning of empty targets heals.
	cctx, cancel := context.WithTimeout(ctx, r.opTO)
	err = r.client.SAdd(cctx, r.index, id).Err()
	cancel()
	if err != nil {
		return r.failed(ctx, "index "+reg.Key.String(), err)
	}
	r.reachable()
	return nil
}

// Deregister removes reg at once if Redis holds it with reg's Node; see
// Directory.Deregister. It waits for Redis, at most OpTimeout, and fails
// with an error wrapping ErrUnavailable when Redis cannot be reached.
func (r *Redis) Deregister(ctx context.Context, reg Registration) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if r.isClosed() {
		return ErrClosed
	}
	ctx = orBackground(ctx)
	id := targetID(reg.Key)
	res, err := r.runInts(ctx, deregisterScript, id, 2, reg.Server, encodeNode(reg.Node))
	if err != nil {
		return r.failed(ctx, "deregister "+reg.Key.String()+" "+reg.Server, err)
	}
	if res[0] == 1 {
		r.invalidate(reg.Key, res[1])
	}
	r.reachable()
	return nil
}

// Lookup returns the live entries of k; see Directory.Lookup.
//
// It answers from the cache when the cache is trustworthy: the change
// subscription is live, no Redis error happened since the key was read,
// and none of its entries is past its expiry. Otherwise it reads Redis,
// waiting at most OpTimeout. If Redis cannot be reached it returns the
// cached entries, stale and possibly past their expiry (nothing can
// refresh them during an outage), and fails with an error wrapping
// ErrUnavailable only when k was never read successfully.
func (r *Redis) Lookup(ctx context.Context, k Key) ([]Entry, error) {
	es, _, err := r.lookup(ctx, k)
	if err != nil {
		return nil, err
	}
	return slices.Clone(es), nil
}

// Version returns k's version counter (see Versioner), which the scripts
// raise on every change of k's entries. It answers like Lookup: from the
// cache when Lookup would, else from Redis (storing the entries read).
func (r *Redis) Version(ctx context.Context, k Key) (uint64, error) {
	_, v, err := r.lookup(ctx, k)
	if err != nil {
		return 0, err
	}
	return uint64(max(v, 0)), nil
}

// lookup is Lookup without the copy: the entries and version of k, from
// the cache when it is trustworthy, else from Redis.
func (r *Redis) lookup(ctx context.Context, k Key) ([]Entry, int64, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, 0, err
	}
	r.lookups.Add(1)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, 0, ErrClosed
	}
	r.startLocked()
	// The entry exists before Redis is read, so that a notification
	// arriving meanwhile makes the loop re-read it.
	c := r.entryLocked(k)
	if c.filled && r.trustedLocked(c) && !anyExpired(c.entries, time.Now()) {
		es, v := c.entries, c.version
		r.mu.Unlock()
		r.cacheHits.Add(1)
		return es, v, nil
	}
	gen, live, writes := r.gen, r.subLive, c.writes
	r.mu.Unlock()

	res, err := r.fetch(orBackground(ctx), k)
	if err != nil {
		err = r.failed(orBackground(ctx), "lookup "+k.String(), err)
		if !errors.Is(err, ErrUnavailable) {
			return nil, 0, err
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if c.filled {
			r.staleServed.Add(1)
			return c.entries, c.version, nil
		}
		return nil, 0, err
	}
	r.reachable()
	r.store(k, res, gen, live, false, writes)
	return res.entries, res.version, nil
}

// List returns every live entry in Redis under Prefix; see Lister.List.
// It reads the index of targets and each target (OpTimeout per call),
// removes targets without entries from the index, and fails with an
// error wrapping ErrUnavailable when Redis cannot be reached. It does not
// use the cache.
func (r *Redis) List(ctx context.Context) ([]Entry, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	if r.isClosed() {
		return nil, ErrClosed
	}
	ctx = orBackground(ctx)
	cctx, cancel := context.WithTimeout(ctx, r.opTO)
	ids, err := r.client.SMembers(cctx, r.index).Result()
	cancel()
	if err != nil {
		return nil, r.failed(ctx, "list", err)
	}
	out := []Entry{}
	for _, id := range ids {
		k, ok := parseTargetID(id)
		if !ok {
			continue // not written by us
		}
		res, err := r.fetch(ctx, k)
		if err != nil {
			return nil, r.failed(ctx, "list "+k.String(), err)
		}
		if len(res.entries) == 0 {
			cctx, cancel := context.WithTimeout(ctx, r.opTO)
			err := r.client.SRem(cctx, r.index, id).Err()
			cancel()
			if err != nil {
				return nil, r.failed(ctx, "list prune "+k.String(), err)
			}
		}
		out = append(out, res.entries...)
	}
	r.reachable()
	sortEntries(out)
	return out, nil
}

// Watch reports changes to k made by any process using the same Redis;
// see Directory.Watch. Changes arrive through the change subscription, the
// periodic poll and local expiry timers. After Close it returns a channel
// that never receives and a no-op stop.
func (r *Redis) Watch(k Key) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ch, func() {}
	}
	r.startLocked()
	c := r.entryLocked(k)
	c.watchers[ch] = struct{}{}
	if !c.filled {
		r.pending[k] = struct{}{} // read it, to know when entries expire
		r.wakeLocked()
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if c := r.cache[k]; c != nil { // nil after Close
				delete(c.watchers, ch)
			}
		})
	}
	return ch, stop
}

// Close stops the background goroutines, closes the change subscription
// and the Redis client, and waits for all of them. Later calls fail with
// ErrClosed; watcher channels are not closed. Idempotent.
func (r *Redis) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	ps := r.ps
	r.ps = nil
	r.cache = nil
	r.mu.Unlock()

	close(r.done)
	r.cancel()
	var errs []error
	if ps != nil {
		if err := ps.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			errs = append(errs, err)
		}
	}
	r.routines.Close()
	if err := r.client.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("directory: close redis: %w", err)
	}
	return nil
}

// fetch runs lookupScript for k, bounded by OpTimeout.
func (r *Redis) fetch(ctx context.Context, k Key) (lookupResult, error) {
	reply, err := r.runScript(ctx, lookupScript, targetID(k)).Slice()
	if err != nil {
		return lookupResult{}, err
	}
	return parseLookup(k, reply, time.Now())
}

// runScript runs script, bounded by OpTimeout, on the keys of target id
// with the prelude's arguments (changes channel, id, key grace) followed
// by args.
func (r *Redis) runScript(ctx context.Context, script *redis.Script, id string, args ...any) *redis.Cmd {
	cctx, cancel := context.WithTimeout(ctx, r.opTO)
	defer cancel()
	argv := append([]any{r.changes, id, keyGrace.Milliseconds()}, args...)
	return script.Run(cctx, r.client, targetKeys(r.prefix, id), argv...)
}

// runInts runs script like runScript and checks that it replied n integers.
func (r *Redis) runInts(ctx context.Context, script *redis.Script, id string, n int, args ...any) ([]int64, error) {
	res, err := r.runScript(ctx, script, id, args...).Int64Slice()
	if err == nil && len(res) != n {
		err = fmt.Errorf("malformed reply %v", res)
	}
	return res, err
}

// failed accounts for the failed Redis call op and returns the error for
// the caller: ctx.Err() if the caller gave up, ErrClosed after Close, an
// error wrapping ErrUnavailable and err if Redis is unreachable, else err
// wrapped with op.
func (r *Redis) failed(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if r.isClosed() {
		return ErrClosed
	}
	r.errs.Add(1)
	r.mu.Lock()
	r.gen++ // whatever is cached may have missed changes
	r.mu.Unlock()
	if unreachable(err) {
		r.unreachable(err)
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("directory: redis %s: %w", op, err)
}

// unreachable reports whether err means that Redis cannot serve us now, as
// opposed to an error reply to a working connection.
func unreachable(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return true // network errors, timeouts, a closed pool
	}
	return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) ||
		redis.IsClusterDownError(err) || redis.IsTryAgainError(err) ||
		redis.IsMasterDownError(err)
}

// flapWindow: a failure this soon after an outage ended continues that
// outage instead of starting a new one. Right after a restart go-redis
// still fails some dials for up to a second (its pool's dial circuit
// breaker), which would otherwise count and log a second outage.
const flapWindow = 5 * time.Second

// unreachable records that Redis cannot be reached, counting and logging
// the start of an outage once.
func (r *Redis) unreachable(err error) {
	r.mu.Lock()
	start := !r.down && !r.closed
	announce := start && (r.upSince.IsZero() || time.Since(r.upSince) > flapWindow)
	if start {
		r.down = true
		if announce {
			r.downSince = time.Now()
			r.endLogged = false
			r.outages.Add(1)
		}
	}
	r.mu.Unlock()
	if announce {
		r.log.Warn("directory: redis unreachable; serving cached lookups",
			"addrs", r.addrs, "err", err)
	}
}

// reachable records a successful call, logging the end of an outage once.
func (r *Redis) reachable() {
	r.mu.Lock()
	end := r.down && !r.endLogged
	since := r.downSince
	if r.down {
		r.down = false
		r.endLogged = true
		r.upSince = time.Now()
	}
	r.mu.Unlock()
	if end {
		r.log.Info("directory: redis reachable again", "addrs", r.addrs,
			"outage", time.Since(since).Round(time.Millisecond))
	}
}

// invalidate makes the next Lookup of k read Redis, and keeps a read that
// started before our write (version) from filling the cache with what it
// saw: read-your-writes.
func (r *Redis) invalidate(k Key, version int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.cache[k]; c != nil {
		c.gen = 0
		c.floor = max(c.floor, version)
		c.writes++
	}
}

// refreshed records in the cache that a plain refresh of reg moved its
// expiry to exp (nobody is notified of a refresh, so the cache would keep
// the old expiry). If the cache does not hold reg, it is invalidated.
func (r *Redis) refreshed(reg Registration, exp time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cache[reg.Key]
	if c == nil {
		return
	}
	c.writes++ // a read begun before this refresh holds the old expiry
	if !c.filled {
		return
	}
	i := slices.IndexFunc(c.entries, func(e Entry) bool { return e.Registration.Equal(reg) })
	if i < 0 {
		c.gen = 0
		return
	}
	c.entries = slices.Clone(c.entries) // returned slices are not shared, but stay safe
	c.entries[i].Expires = exp
	c.due = earliestExpiry(c.entries)
}

func earliestExpiry(es []Entry) time.Time {
	var first time.Time
	for _, e := range es {
		if first.IsZero() || e.Expires.Before(first) {
			first = e.Expires
		}
	}
	return first
}

// store puts a lookup result for k into the cache and signals the
// watchers if the set of registrations changed. gen and live are Redis.gen
// and subLive from before the read: the result is trusted only if neither
// changed; writes is the entry's count of our own writes from before the
// read: if one came since, the result is dropped (the next read has it). A result older than the cached one (lower version) is dropped
// unless force is set (after a loss of data the version may go down).
func (r *Redis) store(k Key, res lookupResult, gen uint64, live, force bool, writes uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cache[k]
	if c == nil {
		return // closed
	}
	if c.writes != writes {
		return // one of our writes came after this read began: it may be stale
	}
	if !force && (c.filled && res.version < c.version || res.version < c.floor) {
		return
	}
	changed := !sameRegistrations(c.entries, res.entries)
	c.filled = true
	c.entries = res.entries
	c.version = res.version
	c.gen = 0
	if live && r.subLive && gen == r.gen {
		c.gen = gen
	}
	c.due = earliestExpiry(res.entries)
	if changed {
		for ch := range c.watchers {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// sameRegistrations reports whether a and b (both sorted) hold the same
// registrations, ignoring expiries.
func sameRegistrations(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool { return x.Registration.Equal(y.Registration) })
}

func anyExpired(es []Entry, now time.Time) bool {
	for _, e := range es {
		if !now.Before(e.Expires) {
			return true
		}
	}
	return false
}

// trustedLocked reports whether c can answer a Lookup. r.mu must be held.
func (r *Redis) trustedLocked(c *cacheEntry) bool {
	return r.subLive && c.gen != 0 && c.gen == r.gen
}

// entryLocked returns the cache entry of k, creating it. r.mu must be held
// and r not closed.
func (r *Redis) entryLocked(k Key) *cacheEntry {
	c := r.cache[k]
	if c == nil {
		c = &cacheEntry{entries: []Entry{}, watchers: make(map[chan struct{}]struct{})}
		r.cache[k] = c
	}
	return c
}

func (r *Redis) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// wakeLocked wakes the loop without blocking.
func (r *Redis) wakeLocked() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// orBackground turns a nil ctx into context.Background().
func orBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}
