package zmqmsg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/zmqmsg/zmqmsg/engine"
)

// Priority is a notification's priority, as in oslo.messaging.
type Priority string

// The seven priorities.
const (
	Audit    Priority = "audit"
	Debug    Priority = "debug"
	Info     Priority = "info"
	Warn     Priority = "warn"
	Error    Priority = "error"
	Critical Priority = "critical"
	Sample   Priority = "sample"
)

// Priorities lists every priority.
var Priorities = []Priority{Audit, Debug, Info, Warn, Error, Critical, Sample}

// Valid reports whether p is one of the seven priorities.
func (p Priority) Valid() bool {
	for _, q := range Priorities {
		if p == q {
			return true
		}
	}
	return false
}

// DefaultNotifyTopic is the topic of a Notifier made without topics.
const DefaultNotifyTopic = "notifications"

// Errors of the NOTIFY pattern.
var (
	// ErrNotDelivered: a notification did not reach every pool listening to
	// its topic; the *NotifyError says which.
	ErrNotDelivered = engine.ErrNotDelivered
	// ErrInvalidNotification: a priority that is not one of the seven, or an
	// empty event type.
	ErrInvalidNotification = errors.New("zmqmsg: invalid notification")
)

// NotifyError names the pools a notification did not reach (pool -> why).
type NotifyError = engine.NotifyError

// Notifier publishes notifications to listener pools. It is cheap, and safe
// for concurrent use.
type Notifier struct {
	t           *Transport
	publisherID string
	topics      []string
}

// Notifier returns a Notifier that publishes as publisherID to topics
// (DefaultNotifyTopic if none).
func (t *Transport) Notifier(publisherID string, topics ...string) *Notifier {
	if len(topics) == 0 {
		topics = []string{DefaultNotifyTopic}
	}
	return &Notifier{t: t, publisherID: publisherID, topics: append([]string(nil), topics...)}
}

// Metadata keys that carry a notification's fields in the envelope.
const (
	metaPriority  = "priority"
	metaEventType = "event_type"
	metaPublisher = "publisher_id"
	metaTimestamp = "timestamp"
)

// Notify sends a notification to every pool of listeners of each of the
// notifier's topics: each pool receives exactly one copy, on one of its
// members (members share the load). payload is encoded with the codec, or
// sent as is if it is a []byte. Delivery to each pool is acknowledged like a
// CAST, and moved to another member of the pool when one does not answer
// (at least once; a member runs a notification once). It returns nil when
// a member of every pool has run its handler (a topic nobody listens to is counted in
// Stats.NotificationsUnheard), a *NotifyError (ErrNotDelivered) naming the
// pools that do not, ErrInvalidNotification, or ctx.Err().
func (n *Notifier) Notify(ctx context.Context, p Priority, eventType string, payload any) error {
	if !p.Valid() {
		return fmt.Errorf("%w: priority %q", ErrInvalidNotification, p)
	}
	if eventType == "" {
		return fmt.Errorf("%w: empty event type", ErrInvalidNotification)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now() // one timestamp for every topic's copy
	if n.t.chain == nil {
		return n.t.notify(ctx, n.topics, p, eventType, n.publisherID, now, payload)
	}
	var errs []error
	for _, topic := range n.topics { // the interceptors see one notification per topic
		info := &CallInfo{Pattern: PatternNotify, Target: Target{Exchange: engine.NotifyExchange, Topic: topic}, Method: eventType, priority: p, publisher: n.publisherID, at: now}
		if err := n.t.intercepted(ctx, info, payload, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// notify sends a notification to each of topics, encoded once.
func (t *Transport) notify(ctx context.Context, topics []string, p Priority, eventType, publisher string, at time.Time, payload any) error {
	flags, body, err := encode(t.codec, payload)
	if err != nil {
		return fmt.Errorf("zmqmsg: encode notification: %w", err)
	}
	meta := map[string]string{
		metaPriority:  string(p),
		metaEventType: eventType,
		metaPublisher: publisher,
		metaTimestamp: strconv.FormatInt(at.UnixNano(), 10),
	}
	var errs []error
	for _, topic := range topics {
		if err := t.e.Notify(ctx, topic, meta, flags, body); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Audit sends a notification of priority Audit.
func (n *Notifier) Audit(ctx context.Context, eventType string, payload any) error {
	return n.Notify(ctx, Audit, eventType, payload)
}

// Debug sends a notification of priority Debug.
func (n *Notifier) Debug(ctx context.Context, eventType string, payload any) error {
	return n.Notify(ctx, Debug, eventType, payload)
}

// Info sends a notification of priority Info.
func (n *Notifier) Info(ctx context.Context, eventType string, payload any) error {
	return n.Notify(ctx, Info, eventType, payload)
}

// Warn sends a notification of priority Warn.
func (n *Notifier) Warn(ctx context.Context, eventType string, payload any) error {
	return n.Notify(ctx, Warn, eventType, payload)
}

// Error sends a notification of priority Error.
func (n *Notifier) Error(ctx context.Context, eventType string, payload any) error {
	return n.Notify(ctx, Error, eventType, payload)
}

// Critical sends a notification of priority Critical.
func (n *Notifier) Critical(ctx context.Context, eventType string, payload any) error {
	return n.Notify(ctx, Critical, eventType, payload)
}

// Sample sends a notification of priority Sample.
func (n *Notifier) Sample(ctx context.Context, eventType string, payload any) error {
	return n.Notify(ctx, Sample, eventType, payload)
}

// Notification is one notification as a listener receives it.
type Notification struct {
	Priority    Priority
	PublisherID string
	EventType   string
	MessageID   string // the same for every pool's copy
	Timestamp   time.Time
	Topic       string

	args Args // the request that carried it
}

// Decode decodes the payload into v (a pointer). A payload sent as []byte
// can only be decoded into a *[]byte.
func (n Notification) Decode(v any) error { return n.args.Decode(v) }

// Payload returns the encoded payload. It belongs to the notification
// alone and stays valid after the handler returns.
func (n Notification) Payload() []byte { return n.args.Raw() }

// ListenOption configures a Listener.
type ListenOption func(*listenOptions)

type listenOptions struct {
	priorities map[Priority]bool // nil: all
	batchSize  int
	flush      time.Duration
	batch      func(ctx context.Context, batch []Notification) error
}

// WithPriorities makes a listener receive only notifications of these
// priorities (the others are acknowledged and dropped, counted in
// Stats.NotificationsFiltered).
func WithPriorities(ps ...Priority) ListenOption {
	return func(o *listenOptions) {
		o.priorities = map[Priority]bool{}
		for _, p := range ps {
			o.priorities[p] = true
		}
	}
}

// WithBatch makes the listener deliver notifications to h in batches of up
// to size, or whatever arrived within flush of a batch's first notification.
// The handler given to Listen is then not called (it may be nil).
func WithBatch(size int, flush time.Duration, h func(ctx context.Context, batch []Notification) error) ListenOption {
	return func(o *listenOptions) { o.batchSize, o.flush, o.batch = size, flush, h }
}

// Listener is a running member of a listener pool.
type Listener struct {
	servers []*engine.Server
	batcher *batcher
	once    sync.Once
	err     error
}

// Listen joins pool (the empty string is a pool too) as a listener of
// topics and returns once it is reachable. Every pool of a topic receives
// each notification once; the members of a pool share them. h runs for each
// notification (concurrently, up to Config.ServerConcurrency); its error is
// counted and logged. See WithPriorities and WithBatch.
func (t *Transport) Listen(topics []string, pool string, h func(ctx context.Context, n Notification) error, opts ...ListenOption) (*Listener, error) {
	var o listenOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	switch {
	case len(topics) == 0:
		return nil, fmt.Errorf("%w: Listen needs at least one topic", ErrInvalidTarget)
	case o.batch == nil && h == nil:
		return nil, fmt.Errorf("%w: nil handler", ErrInvalidConfig)
	case o.batch != nil && (o.batchSize < 1 || o.flush <= 0):
		return nil, fmt.Errorf("%w: WithBatch needs size ≥ 1 and flush > 0", ErrInvalidConfig)
	}
	for p := range o.priorities {
		if !p.Valid() {
			return nil, fmt.Errorf("%w: priority %q", ErrInvalidNotification, p)
		}
	}
	l := &Listener{}
	if o.batch != nil {
		var err error
		if l.batcher, err = newBatcher(t.e, o.batchSize, o.flush, o.batch); err != nil {
			return nil, err
		}
	}
	codec := t.codec
	dispatch := func(ctx context.Context, req *engine.Request) (engine.Reply, error) {
		n := notification(req, codec)
		if o.priorities != nil && !o.priorities[n.Priority] {
			t.e.NoteFiltered()
			return engine.Reply{}, nil
		}
		ctx = withIncoming(ctx, req.Msg.Meta)
		if len(t.serverICs) > 0 {
			return engine.Reply{}, t.serveNotification(ctx, req, n, l, h)
		}
		return engine.Reply{}, l.handle(ctx, n, h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, topic := range topics {
		name := pool + "/" + t.newName()
		s, err := t.e.ServeNotify(ctx, topic, name, dispatch)
		if err != nil {
			_ = l.Stop(ctx)
			return nil, err
		}
		l.servers = append(l.servers, s)
	}
	return l, nil
}

// handle gives n to the batch, or to h.
func (l *Listener) handle(ctx context.Context, n Notification, h func(ctx context.Context, n Notification) error) error {
	if l.batcher != nil {
		return l.batcher.add(ctx, n) // n owns its payload
	}
	return h(ctx, n)
}

// serveNotification handles n through the server interceptors (for a batch
// listener they run as n joins the batch).
func (t *Transport) serveNotification(ctx context.Context, req *engine.Request, n Notification, l *Listener, h func(ctx context.Context, n Notification) error) error {
	info := serverInfo(req, req.Msg.Server)
	info.Method = n.EventType
	_, err := t.serve(ctx, info, n.args, func(ctx context.Context, _ Args) (any, error) { return nil, l.handle(ctx, n, h) })
	return err
}

// notification decodes a request of the notify pipeline.
func notification(req *engine.Request, codec Codec) Notification {
	meta := req.Msg.Meta
	n := Notification{
		Priority:    Priority(meta[metaPriority]),
		PublisherID: meta[metaPublisher],
		EventType:   meta[metaEventType],
		MessageID:   meta[engine.MetaNotificationID],
		Topic:       req.Msg.Topic,
		args:        Args{req: req, codec: codec},
	}
	if ns, err := strconv.ParseInt(meta[metaTimestamp], 10, 64); err == nil {
		n.Timestamp = time.Unix(0, ns)
	}
	return n
}

// Stop leaves the pool: no new notification comes to this listener, the
// ones it has are handled (a batch listener flushes its last batch), and it
// returns when they are, or when ctx ends. Idempotent.
func (l *Listener) Stop(ctx context.Context) error {
	l.once.Do(func() {
		var errs []error
		for _, s := range l.servers {
			if err := s.Stop(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if l.batcher != nil {
			l.batcher.stop()
		}
		l.err = errors.Join(errs...)
	})
	return l.err
}

// batcher collects notifications into batches for a batch handler. One
// goroutine owns the current batch; it flushes at size, at the flush
// timeout of the batch's first notification, and at stop.
type batcher struct {
	in   chan Notification
	quit chan struct{}
	done chan struct{}
}

func newBatcher(e *engine.Engine, size int, flush time.Duration, h func(context.Context, []Notification) error) (*batcher, error) {
	b := &batcher{in: make(chan Notification, size), quit: make(chan struct{}), done: make(chan struct{})}
	log, closing := e.Config().Logger, e.Closing()
	if !e.Go(func() { b.run(size, flush, h, log, closing) }) {
		return nil, ErrClosed
	}
	return b, nil
}

// run collects batches until Stop, or the Transport's Close, and hands
// each to h when it is full or flush has passed since its first. The last
// batch of a Close gets a cancelled ctx: Close waits for this goroutine.
func (b *batcher) run(size int, flush time.Duration, h func(context.Context, []Notification) error, log *slog.Logger, closing <-chan struct{}) {
	defer close(b.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var batch []Notification
	timer := time.NewTimer(flush)
	timer.Stop()
	deliver := func() {
		if len(batch) > 0 {
			if err := h(ctx, batch); err != nil {
				log.Warn("batch listener failed", "size", len(batch), "err", err)
			}
			batch = nil
		}
		timer.Stop()
	}
	add := func(n Notification) {
		if len(batch) == 0 {
			timer.Reset(flush)
		}
		if batch = append(batch, n); len(batch) == size {
			deliver()
		}
	}
	for {
		select {
		case n := <-b.in:
			add(n)
		case <-timer.C:
			deliver()
		case <-b.quit:
		case <-closing:
		}
		select {
		case <-b.quit:
		case <-closing:
			cancel()
		default:
			continue
		}
		for len(b.in) > 0 {
			add(<-b.in)
		}
		deliver()
		return
	}
}

// add hands n to the batcher, waiting (bounded by ctx) while it is busy.
func (b *batcher) add(ctx context.Context, n Notification) error {
	select {
	case b.in <- n:
		return nil
	case <-b.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *batcher) stop() {
	close(b.quit)
	<-b.done
}
