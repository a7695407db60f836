package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmqmsg/zmqmsg/actors/proxy"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/envelope"
)

// Request is one call as a server's dispatch function sees it.
type Request struct {
	ID      envelope.ID
	OneWay  bool // a cast, fanout or notification: its result is not sent anywhere
	Topic   string
	Method  string
	Flags   envelope.Flags
	Payload []byte // owned by the request; valid until dispatch returns
	Meta    map[string]string
}

// Reply is a dispatch function's successful result.
type Reply struct {
	Flags   envelope.Flags
	Payload []byte
}

// Dispatch runs one request. An error that wraps ErrNoSuchMethod is sent as
// a RemoteError of type NoSuchMethod; any other error as a RemoteError with
// the error's type and text. A panic is recovered and sent as a RemoteError
// of type "panic"; the server keeps serving.
type Dispatch func(ctx context.Context, req *Request) (Reply, error)

// A server remembers the ids of at least its last dedupSize/2 CASTs (65536:
// 11 s at 6000 casts/s) for at least dedupTTL/2, and at most dedupSize ids:
// far longer than a cast's retries take (3.75 s by default), in 4.5 MiB at
// the limit, plus at most 1 MiB of failed casts' text (see failTextMax).
const (
	dedupSize = 1 << 17
	dedupTTL  = 10 * time.Minute
)

// Server is one server of a topic on this node: a queue fed by the node
// proxy and worker goroutines that run the dispatch function.
type Server struct {
	e        *Engine
	px       *proxy.Proxy // the proxy that routes to this server
	name     string
	key      directory.Key
	reg      directory.Registration
	dispatch Dispatch
	inline   bool   // handlers run on the proxy loop, not on workers
	casts    *dedup // ids of recent CASTs

	queue  chan *proxy.Request
	direct chan *proxy.Request // direct casts, run in order by one goroutine
	// mu guards stopping against Offer: once stopping is set no request
	// enters the queue, and the queue can be closed.
	mu       sync.RWMutex
	stopping bool

	ctx    context.Context // handler contexts derive from it; cancelled by a Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// Serve starts a server named name (unique within the topic) for key and
// returns once it is reachable: routed by the proxy and registered in the
// directory.
//
// With inline, the handlers run on the proxy loop goroutine itself: no
// hand-off to a worker and back, but a handler that blocks stalls every
// request to this node. Only for short, non-blocking handlers. methods are
// the method names dispatch offers, published in the directory entry.
func (e *Engine) Serve(ctx context.Context, key directory.Key, name string, methods []string, dispatch Dispatch, inline bool) (*Server, error) {
	return e.serve(ctx, e.proxy, key, name, methods, dispatch, inline)
}

// serve starts a server behind px: the call proxy, or the notify proxy for
// notification listeners.
func (e *Engine) serve(ctx context.Context, px *proxy.Proxy, key directory.Key, name string, methods []string, dispatch Dispatch, inline bool) (*Server, error) {
	if e.closed.Load() {
		return nil, ErrClosed
	}
	if err := (Target{Exchange: key.Exchange, Topic: key.Topic, Server: name}).Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		e:        e,
		px:       px,
		name:     name,
		key:      key,
		reg:      directory.Registration{Key: key, Server: name, Node: e.node, Methods: methods},
		dispatch: dispatch,
		inline:   inline,
		casts:    newDedup(dedupSize, dedupTTL),
		queue:    make(chan *proxy.Request, e.cfg.ServerQueue),
		direct:   make(chan *proxy.Request, e.cfg.ServerQueue),
	}
	s.ctx, s.cancel = context.WithCancel(e.ctx)
	// Route to the server (on a member of a proxy daemon: the daemon routes
	// the topic to this process) before registering it.
	if err := px.Attach(ctx, key, s); err != nil {
		s.cancel()
		return nil, fmt.Errorf("zmqmsg: serve: %w", err)
	}
	// Subscribe the node's fanout port to the topic before the server is
	// registered: whoever finds it in the directory can reach it.
	if err := px.Subscribe(ctx, key); err != nil {
		_ = px.Detach(ctx, key, s)
		px.Forget(key, s)
		s.cancel()
		return nil, fmt.Errorf("zmqmsg: serve: fanout subscription: %w", err)
	}
	workers := e.cfg.ServerConcurrency
	if inline {
		workers = 0 // the proxy loop runs the handlers
	}
	for i := 0; i < workers; i++ {
		s.wg.Add(1)
		go s.work()
	}
	s.wg.Add(1)
	go s.directLane()
	e.mu.Lock()
	if e.closed.Load() {
		e.mu.Unlock()
		s.shutdown(ctx, true)
		return nil, ErrClosed
	}
	e.servers[s] = struct{}{}
	e.mu.Unlock()
	if err := s.register(ctx); err != nil {
		_ = s.Stop(ctx)
		return nil, fmt.Errorf("zmqmsg: serve: register: %w", err)
	}
	return s, nil
}

// Name returns the server's name.
func (s *Server) Name() string { return s.name }

// Offer hands a request to the server without blocking (proxy.Server).
//
// A CAST whose id the server has had recently is a retry whose ACK was lost:
// it is refused as Duplicate (and acknowledged again by the proxy, with the
// outcome the first ACK carried), so its handler runs once.
func (s *Server) Offer(r *proxy.Request) proxy.Offer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	cast := proxy.OneWay(r.Msg.Kind)
	if cast {
		// Before the stopping check: a stopping server still answers the
		// resends of the casts it has (running: IN_PROGRESS, run: ACK),
		// and records no new one.
		switch st, o := s.casts.see(r.Msg.ID, time.Now(), !s.stopping); st {
		case castRunning:
			return proxy.InProgress
		case castDone:
			r.Ack = duplicateAck(r, o)
			return proxy.Duplicate
		}
	}
	if s.stopping {
		return proxy.Stopping
	}
	select {
	case s.queue <- r:
		return proxy.Accepted
	default:
		if cast {
			s.casts.forget(r.Msg.ID) // not taken: its retry must run
		}
		return proxy.Full
	}
}

// register hands the server to the registrar, which registers it now and
// keeps refreshing it.
func (s *Server) register(ctx context.Context) error {
	done := make(chan error, 1)
	return s.e.registrarCall(ctx, &regAdd{reg: s.reg, done: done}, done)
}

// Stop stops intake (deregisters, and the proxy routes no more requests to
// this server), then waits until every request already accepted has been
// answered, or ctx ends. Idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.shutdown(ctx, false)
	return s.err
}

// shutdown implements Stop; abort (Transport.Close) also cancels the
// handlers' contexts so that they return promptly.
func (s *Server) shutdown(ctx context.Context, abort bool) {
	if abort {
		s.cancel()
	}
	s.once.Do(func() {
		dctx, cancel := context.WithTimeout(context.Background(), registrarOpTimeout)
		dereg := make(chan error, 1)
		derr := s.e.registrarCall(dctx, &regRemove{reg: s.reg, done: dereg}, dereg)
		cancel()
		uctx, ucancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.px.Detach(uctx, s.key, s); err != nil && !s.e.closed.Load() {
			s.e.log.Warn("detach from the proxy daemon failed", "server", s.name, "err", err)
		}
		if err := s.px.Unsubscribe(uctx, s.key); err != nil && !s.e.closed.Load() {
			s.e.log.Warn("fanout unsubscribe failed", "server", s.name, "err", err)
		}
		ucancel()
		s.mu.Lock()
		s.stopping = true
		close(s.queue)  // the workers finish what is queued, then exit
		close(s.direct) // and so does the direct-cast lane
		s.mu.Unlock()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.cancel() // tell running handlers to give up
			<-done
			s.err = fmt.Errorf("zmqmsg: server %s stopped before its requests finished: %w", s.name, ctx.Err())
		}
		// Drained: requests that name it are no longer routed to it.
		s.px.Forget(s.key, s)
		s.cancel()
		s.e.mu.Lock()
		delete(s.e.servers, s)
		s.e.mu.Unlock()
		if derr != nil && s.err == nil {
			s.err = fmt.Errorf("zmqmsg: server %s: deregister: %w", s.name, derr)
		}
	})
}

// work is a worker goroutine.
func (s *Server) work() {
	defer s.wg.Done()
	for r := range s.queue {
		s.handle(r)
	}
}

// handle runs one request on a worker and sends its reply through the proxy.
func (s *Server) handle(r *proxy.Request) {
	if proxy.OneWay(r.Msg.Kind) {
		if ack := ackBody(r, s.runCast(r)); ack != nil {
			if err := s.px.Ack(s.e.ctx, r.Routing, r.Msg.ID, ack); err != nil {
				s.px.Counters().SendFailed.Add(1)
			}
		}
		return
	}
	body := s.respond(r)
	if body == nil {
		return
	}
	var expires time.Time
	if r.Msg.Deadline != 0 {
		expires = time.Unix(0, r.Msg.Deadline)
	}
	if err := s.px.Reply(s.e.ctx, r.Routing, expires, body); err != nil {
		s.px.Counters().SendFailed.Add(1)
	}
}

// Inline reports whether the server's handlers run on the proxy loop
// (proxy.InlineServer).
func (s *Server) Inline() bool { return s.inline }

// HandleInline runs r on the proxy loop goroutine and returns the reply
// body (nil: nothing to send) or Stopping (proxy.InlineServer).
func (s *Server) HandleInline(r *proxy.Request) ([]byte, proxy.Offer) {
	s.mu.RLock()
	stopping := s.stopping
	s.mu.RUnlock()
	cast := proxy.OneWay(r.Msg.Kind)
	if cast {
		// Known ids first, as in Offer (inline, a known id has run).
		switch st, o := s.casts.see(r.Msg.ID, time.Now(), !stopping); st {
		case castRunning:
			return nil, proxy.InProgress
		case castDone:
			r.Ack = duplicateAck(r, o)
			return nil, proxy.Duplicate
		}
	}
	if stopping {
		return nil, proxy.Stopping
	}
	if cast {
		return ackBody(r, s.runCast(r)), proxy.Accepted
	}
	return s.respond(r), proxy.Accepted
}

// ackBody is the ACK of a CAST or notification whose handler has run,
// carrying its outcome; nil when its sender asked for none.
func ackBody(r *proxy.Request, o castOutcome) []byte {
	if r.Msg.Flags&envelope.FlagNoAck != 0 {
		return nil
	}
	body, err := envelope.Encode(&envelope.Message{Kind: envelope.KindAck, ID: r.Msg.ID, Code: o.Code, ErrType: o.ErrType, ErrMsg: o.ErrMsg})
	if err != nil {
		return nil
	}
	return body
}

// duplicateAck is the ACK for a resend of a cast that has run: nil when it
// succeeded (the proxy acknowledges OK), else its failure again.
func duplicateAck(r *proxy.Request, o castOutcome) []byte {
	if o.Code == envelope.CodeOK {
		return nil
	}
	return ackBody(r, o)
}

// runCast runs the handler of a one-way message, marks a CAST's or
// NOTIFY's id as run, and returns its outcome, which the ACK carries: OK, or
// the handler's error as a CALL's ERROR would carry it (REMOTE, or
// NO_SUCH_METHOD), cut to the de-duplication table's bounds. A NOTIFY's
// outcome is OK whatever its handler did: a listener's failure is counted
// and logged, not the notifier's. Every handler error is counted (CastErrors)
// and logged at the 1st, 2nd, 4th... error; a fanout or an unacknowledged
// cast whose method the server does not have is counted as refused
// (FanoutsRefused, DirectRefused) and logged likewise, with its method.
func (s *Server) runCast(r *proxy.Request) castOutcome {
	m := &r.Msg
	if m.Kind == envelope.KindNotify {
		s.e.notificationsRun.Add(1)
	} else {
		s.e.castsRun.Add(1)
	}
	var o castOutcome
	_, err := s.run(s.ctx, &Request{ID: m.ID, OneWay: m.Kind != envelope.KindCall, Topic: m.Topic, Method: m.Method, Flags: m.Flags, Payload: m.Payload, Meta: m.Meta})
	if err != nil {
		o.Code, o.ErrType, o.ErrMsg, _ = errorFields(err)
		s.noteCastError(m, o.Code, err, s.e.castErrors.Add(1))
		if m.Kind == envelope.KindNotify {
			o = castOutcome{}
		}
	}
	return s.casts.finish(m.ID, o)
}

// noteCastError logs a one-way handler's error at powers of two of its
// counter: a refused fanout or unacknowledged cast (no such method) under
// its own counter, any other under CastErrors (failed, its new count).
func (s *Server) noteCastError(m *envelope.Message, code envelope.Code, err error, failed uint64) {
	if code == envelope.CodeNoSuchMethod {
		var refused *atomic.Uint64
		what := "fanout"
		switch {
		case m.Kind == envelope.KindFanout:
			refused = &s.e.fanoutsRefused
		case m.Kind == envelope.KindCast && m.Flags&envelope.FlagNoAck != 0:
			refused, what = &s.e.directNoMethod, "unacknowledged cast"
		}
		if refused != nil {
			if n := refused.Add(1); n&(n-1) == 0 {
				s.e.log.Warn(what+" refused: the server has no such method; dropped", "server", s.name, "topic", m.Topic, "method", m.Method, "refused_total", n)
			}
			return
		}
	}
	if failed&(failed-1) == 0 {
		s.e.log.Warn("cast handler failed", "server", s.name, "method", m.Method, "err", err, "failed_total", failed)
	}
}

// errorFields returns the code, errtype and errmsg that carry a handler's
// error to its caller, in an ERROR, or to its caster, in an ACK (§5.7 of
// docs/design.md). own is false for a RemoteError passed on and for an
// unknown method: not the handler's own failure.
func errorFields(err error) (code envelope.Code, errType, errMsg string, own bool) {
	var re *RemoteError
	switch {
	case errors.As(err, &re):
		if re.Type == remoteTypeNoSuchMethod {
			return envelope.CodeNoSuchMethod, re.Type, re.Message, false
		}
		return envelope.CodeRemote, re.Type, re.Message, false
	case errors.Is(err, ErrNoSuchMethod):
		return envelope.CodeNoSuchMethod, remoteTypeNoSuchMethod, err.Error(), false
	}
	return envelope.CodeRemote, remoteType(err), err.Error(), true
}

// respond runs one request and returns the encoded reply, or nil when no
// reply is due (the request expired before it ran).
func (s *Server) respond(r *proxy.Request) []byte {
	m := &r.Msg
	ctx := s.ctx
	if m.Deadline != 0 {
		deadline := time.Unix(0, m.Deadline)
		if time.Now().After(deadline) {
			// The caller has given up already: running would be wasted.
			s.e.expired.Add(1)
			return nil
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	rep, err := s.run(ctx, &Request{ID: m.ID, OneWay: m.Kind != envelope.KindCall, Topic: m.Topic, Method: m.Method, Flags: m.Flags, Payload: m.Payload, Meta: m.Meta})
	out := envelope.Message{ID: m.ID}
	if err == nil {
		out.Kind, out.Flags = envelope.KindReply, rep.Flags
	} else {
		var own bool
		out.Kind = envelope.KindError
		out.Code, out.ErrType, out.ErrMsg, own = errorFields(err)
		if own {
			s.e.handlerErrors.Add(1)
			if errors.Is(err, context.DeadlineExceeded) && m.Deadline != 0 && ctx.Err() == context.DeadlineExceeded {
				// The handler gave up at the caller's own deadline: to the
				// caller that is its timeout, whichever arrives first, this
				// answer or its own timer.
				out.Code, out.ErrType = envelope.CodeExpired, envelope.CodeExpired.String()
			}
		}
		if len(out.ErrMsg) > envelope.MaxStringLen {
			out.ErrMsg = out.ErrMsg[:envelope.MaxStringLen]
		}
		if len(out.ErrType) > envelope.MaxStringLen {
			out.ErrType = out.ErrType[:envelope.MaxStringLen]
		}
		rep.Payload = nil
	}
	if max := s.e.cfg.MaxMessageSize; max > 0 && len(rep.Payload) > max {
		out = envelope.Message{Kind: envelope.KindError, ID: m.ID, Code: envelope.CodeTooLarge, ErrType: envelope.CodeTooLarge.String(),
			ErrMsg: fmt.Sprintf("reply of %d bytes over the limit of %d", len(rep.Payload), max)}
		rep.Payload = nil
	}
	out.Payload = rep.Payload
	body, err := envelope.Encode(&out)
	if err != nil {
		s.e.log.Error("encode reply", "server", s.name, "err", err)
		return nil
	}
	return body
}

// run calls dispatch, turning a panic into a RemoteError.
func (s *Server) run(ctx context.Context, req *Request) (rep Reply, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.e.panics.Add(1)
			s.e.log.Error("handler panicked", "server", s.name, "method", req.Method, "panic", p, "stack", string(debug.Stack()))
			err = &RemoteError{Type: remoteTypePanic, Message: fmt.Sprint(p)}
		}
	}()
	return s.dispatch(ctx, req)
}
