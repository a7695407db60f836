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
	"github.com/zmqmsg/zmqmsg/internal/config"
)

// Request is one request from the wire to the handler and back: decoded
// once by the node proxy, handed to the server's worker (or run inline),
// and answered through Server.answer. Its payload aliases a frame that
// belongs to the request alone, so it stays valid after the handler.
type Request = proxy.Request

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
	sv       *serving
	px       *proxy.Proxy // the proxy that routes to this server
	name     string
	key      directory.Key
	reg      directory.Registration
	dispatch Dispatch
	inline   bool   // handlers run on the proxy loop, not on workers
	casts    *dedup // ids of recent CASTs

	calls  *workers // CALLs and CASTs, on up to ServerConcurrency workers
	direct *workers // direct casts and fanouts, run in order by one worker
	// mu guards stopping against Offer: once stopping is set no request
	// enters the queue, and the queue can be closed.
	mu       sync.RWMutex
	stopping bool

	// The handlers' running average time (ns, 1/8 weight to the newest),
	// the quick runs not finished, and the average under which handlers
	// are quick (quickLimit, or the test hook's): see Quick.
	runAvg     atomic.Int64
	onLoop     atomic.Int32
	quickLimit int64

	ctx    context.Context // handler contexts derive from it; cancelled by a Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the server's workers and lane

	runMu   sync.Mutex
	running map[envelope.ID]*lazyDeadline // CALLs whose handler runs, for CANCEL

	// Introspection: when it started, the user's metadata, a record per
	// method (read-only map), requests for a method it does not have.
	started      time.Time
	meta         map[string]string
	records      map[string]*methodRecord
	noSuchMethod atomic.Uint64
	laneNext     time.Duration // the direct lane's next start, if known (its goroutine's alone)
	once         sync.Once
	err          error
}

// serving is the server side of a node: its servers, and the counters
// of what their handlers did.
type serving struct {
	rt     *runtime
	cfg    *config.Config
	reg    *registrarRef
	node   directory.Node
	closed *atomic.Bool

	mu      sync.Mutex
	servers map[*Server]struct{} // under mu

	expired, panics, handlerErrors              atomic.Uint64
	cancelled                                   atomic.Uint64 // calls whose caller sent a CANCEL while they ran
	heartbeats                                  atomic.Uint64 // IN_PROGRESS ACKs sent for monitored calls
	castsRun, castErrors, directRun, fanoutsRun atomic.Uint64
	notificationsRun, notificationsFiltered     atomic.Uint64
	fanoutsRefused, directNoMethod              atomic.Uint64 // one-way messages to a method the server does not have
}

func (sv *serving) addStats(st *Stats) {
	st.Expired, st.HandlerPanics, st.HandlerErrors = sv.expired.Load(), sv.panics.Load(), sv.handlerErrors.Load()
	st.CallsCancelled, st.HeartbeatsSent = sv.cancelled.Load(), sv.heartbeats.Load()
	st.CastsRun, st.CastErrors, st.DirectCastsRun, st.FanoutsRun = sv.castsRun.Load(), sv.castErrors.Load(), sv.directRun.Load(), sv.fanoutsRun.Load()
	st.NotificationsRun, st.NotificationsFiltered = sv.notificationsRun.Load(), sv.notificationsFiltered.Load()
	st.FanoutsRefused, st.DirectRefused = sv.fanoutsRefused.Load(), sv.directNoMethod.Load()
}

// serve starts a server named name (unique within the topic) for key
// behind px (the call proxy, or the notify proxy for listeners) and
// returns once it is reachable: routed by the proxy and registered in the
// directory. svc.Methods are published in the directory entry.
func (sv *serving) serve(ctx context.Context, px *proxy.Proxy, key directory.Key, name string, svc Service, dispatch Dispatch, inline bool) (*Server, error) {
	if sv.closed.Load() {
		return nil, ErrClosed
	}
	if err := (Target{Exchange: key.Exchange, Topic: key.Topic, Server: name}).Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		sv:       sv,
		px:       px,
		name:     name,
		key:      key,
		reg:      directory.Registration{Key: key, Server: name, Node: sv.node, Methods: svc.Methods},
		dispatch: dispatch,
		inline:   inline,
		casts:    newDedup(dedupSize, dedupTTL),
		started:  time.Now(),
		meta:     svc.Metadata,
		records:  newRecords(svc.Methods),

		quickLimit: int64(orDefault(sv.cfg.Hooks().QuickLimit, quickLimit)),
	}
	start := sv.rt.routines.Go
	s.calls = newWorkers(sv.cfg.ServerQueue, max(sv.cfg.ServerConcurrency, 1), s.handle, start, &s.wg)
	s.direct = newWorkers(sv.cfg.ServerQueue, 1, s.runDirect, start, &s.wg)
	s.ctx, s.cancel = context.WithCancel(sv.rt.ctx)
	if err := s.attach(ctx); err != nil {
		return nil, err
	}
	sv.mu.Lock()
	if sv.closed.Load() {
		sv.mu.Unlock()
		s.shutdown(ctx, true)
		return nil, ErrClosed
	}
	sv.servers[s] = struct{}{}
	sv.mu.Unlock()
	if err := sv.reg.register(ctx, s.reg); err != nil {
		_ = s.Stop(ctx)
		return nil, fmt.Errorf("zmqmsg: serve: register: %w", err)
	}
	return s, nil
}

// attach makes the proxy route to the server (on a member of a proxy
// daemon: the daemon routes the topic to this process) and subscribes the
// node's fanout port to the topic, before the server is registered:
// whoever finds it in the directory can reach it.
func (s *Server) attach(ctx context.Context) error {
	if err := s.px.Attach(ctx, s.key, s); err != nil {
		s.cancel()
		return fmt.Errorf("zmqmsg: serve: %w", err)
	}
	if err := s.px.Subscribe(ctx, s.key); err != nil {
		_ = s.px.Detach(ctx, s.key, s)
		s.px.Forget(s.key, s)
		s.cancel()
		return fmt.Errorf("zmqmsg: serve: fanout subscription: %w", err)
	}
	return nil
}

// stopAll stops every server, cancelling their handlers (Close).
func (sv *serving) stopAll() {
	sv.mu.Lock()
	servers := make([]*Server, 0, len(sv.servers))
	for s := range sv.servers {
		servers = append(servers, s)
	}
	sv.mu.Unlock()
	for _, s := range servers {
		ctx, cancel := context.WithTimeout(context.Background(), termTimeout)
		s.shutdown(ctx, true)
		cancel()
	}
}

// Name returns the server's name.
func (s *Server) Name() string { return s.name }

// Offer hands a request to the server without blocking (proxy.Server).
//
// A CAST whose id the server has had recently is a retry whose ACK was lost:
// it is refused as Duplicate (and acknowledged again by the proxy, with the
// outcome the first ACK carried), so its handler runs once.
func (s *Server) Offer(r *Request) proxy.Offer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	cast := proxy.OneWay(r.Msg.Kind)
	if cast {
		// Before the stopping check: a stopping server still answers the
		// resends of the casts it has (running: IN_PROGRESS, run: ACK),
		// and records no new one.
		if o, known := s.known(r, !s.stopping); known {
			return o
		}
	}
	o := s.enqueue(s.calls, r)
	if o == proxy.Full && cast {
		s.casts.forget(r.Msg.ID) // not taken: its retry must run
	}
	return o
}

// known answers a resend of a cast the server has had: InProgress while
// its handler runs, Duplicate (with the first outcome in r.Ack) once it
// has run. A new id is recorded as running if record is set.
func (s *Server) known(r *Request, record bool) (proxy.Offer, bool) {
	switch st, o := s.casts.see(r.Msg.ID, time.Now(), record); st {
	case castRunning:
		return proxy.InProgress, true
	case castDone:
		r.Ack = duplicateAck(r, o)
		return proxy.Duplicate, true
	}
	return 0, false
}

// enqueue hands r to one of the server's queues without blocking (under
// s.mu, read).
func (s *Server) enqueue(w *workers, r *Request) proxy.Offer {
	switch {
	case s.stopping:
		return proxy.Stopping
	case w.offer(r):
		return proxy.Accepted
	}
	return proxy.Full
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
		derr := s.sv.reg.deregister(dctx, s.reg)
		cancel()
		uctx, ucancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.px.Detach(uctx, s.key, s); err != nil && !s.sv.closed.Load() {
			s.sv.rt.log.Warn("detach from the proxy daemon failed", "server", s.name, "err", err)
		}
		if err := s.px.Unsubscribe(uctx, s.key); err != nil && !s.sv.closed.Load() {
			s.sv.rt.log.Warn("fanout unsubscribe failed", "server", s.name, "err", err)
		}
		ucancel()
		s.mu.Lock()
		s.stopping = true
		s.calls.close() // the workers finish what is queued, then exit
		s.direct.close()
		s.mu.Unlock()
		if !s.drained(ctx) {
			s.cancel() // tell running handlers to give up
			s.wg.Wait()
			s.err = fmt.Errorf("zmqmsg: server %s stopped before its requests finished: %w", s.name, ctx.Err())
		}
		// Drained: requests that name it are no longer routed to it.
		s.px.Forget(s.key, s)
		s.cancel()
		s.sv.mu.Lock()
		delete(s.sv.servers, s)
		s.sv.mu.Unlock()
		if derr != nil && s.err == nil {
			s.err = fmt.Errorf("zmqmsg: server %s: deregister: %w", s.name, derr)
		}
	})
}

// drained waits until the workers have finished what was queued, or ctx
// ends (false).
func (s *Server) drained(ctx context.Context) bool {
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { close(done) })
	defer stop()
	idle := make(chan struct{})
	if !s.sv.rt.routines.Go(func() { s.wg.Wait(); close(idle) }) {
		s.wg.Wait()
		return true
	}
	select {
	case <-idle:
		return true
	case <-done:
		return false
	}
}

// handle runs one request on a worker and sends its answer back through
// the proxy.
func (s *Server) handle(r *Request) {
	body := s.timed(r)
	if body == nil {
		return
	}
	var err error
	if proxy.OneWay(r.Msg.Kind) {
		err = s.px.Ack(s.sv.rt.ctx, r.Routing, r.Msg.ID, body)
	} else {
		err = s.px.Reply(s.sv.rt.ctx, r.Routing, expiry(&r.Msg), body)
	}
	if err != nil {
		s.px.Counters().SendFailed.Add(1)
	}
}

// answer runs r and returns what goes back to its sender, on a worker or
// inline: a REPLY or ERROR for a CALL, the ACK carrying the handler's
// outcome for a CAST or NOTIFY; nil when nothing is due (an expired call,
// a cast sent without acks).
func (s *Server) answer(r *Request) ([]byte, time.Duration) {
	if proxy.OneWay(r.Msg.Kind) {
		o, d := s.runCast(r, s.clock())
		return ackBody(r, o), d
	}
	return s.respond(r)
}

// expiry is when the sender of m stops waiting for its answer (zero: never).
func expiry(m *envelope.Message) time.Time {
	if m.Deadline != 0 {
		return time.Unix(0, m.Deadline)
	}
	return time.Time{}
}

// Inline reports whether the server's handlers run on the proxy loop
// (proxy.InlineServer).
func (s *Server) Inline() bool { return s.inline }

// HandleInline runs r on the proxy loop goroutine and returns the reply
// body (nil: nothing to send) or Stopping (proxy.InlineServer).
func (s *Server) HandleInline(r *Request) ([]byte, proxy.Offer) {
	s.mu.RLock()
	stopping := s.stopping
	s.mu.RUnlock()
	if proxy.OneWay(r.Msg.Kind) {
		// Known ids first, as in Offer (inline, a known id has run).
		if o, known := s.known(r, !stopping); known {
			return nil, o
		}
	}
	if stopping {
		return nil, proxy.Stopping
	}
	body, _ := s.answer(r)
	return body, proxy.Accepted
}

// A server's handlers are quick while their running average stays under
// quickLimit: one proxy loop runs them one at a time, so a handler that
// waits on I/O belongs on a worker. A run that overran proxy.QuickBudget
// (by 1 ms, say) lifts the average for the next dozens of runs, which go to
// workers; a handler that is always slow never runs on the loop again, and
// one that was slowed down once (a GC pause, a preempted vCPU) soon does.
const quickLimit = 50 * time.Microsecond

// Quick reserves a run of r on the proxy loop (proxy.QuickServer): the
// handlers have been quick, none of them overran and still runs (the loop
// asks again while a quick run has not finished: that run overran), nothing
// waits in the queue (a quick run must not overtake it), and one of
// ServerConcurrency's slots is free.
func (s *Server) Quick(r *Request) bool {
	// A monitored call runs on a worker: its heartbeats go through the
	// loop, which a quick run holds.
	if s.runAvg.Load() > s.quickLimit || s.onLoop.Load() > 0 || len(s.calls.queue) > 0 || r.Msg.Meta[MetaMonitor] != "" {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.stopping || !s.calls.reserve() {
		return false
	}
	s.wg.Add(1) // Stop waits for the run, as for a worker
	s.onLoop.Add(1)
	return true
}

// HandleQuick runs r, reserved by Quick, and returns its answer
// (proxy.QuickServer). It may run past the loop's budget: the proxy then
// moves the loop to another goroutine.
func (s *Server) HandleQuick(r *Request) ([]byte, proxy.Offer) {
	defer s.onLoop.Add(-1)
	if proxy.OneWay(r.Msg.Kind) {
		if o, known := s.known(r, true); known {
			return nil, o
		}
	}
	return s.timed(r), proxy.Accepted
}

// QuickDone releases a quick run's slot once the proxy has its answer
// (proxy.QuickServer).
func (s *Server) QuickDone() {
	s.calls.release()
	s.wg.Done()
}

// timed answers r, on the proxy loop or a worker, and adds its run time
// to the server's average.
func (s *Server) timed(r *Request) []byte {
	body, d := s.answer(r)
	if d > 0 { // a handler ran (not a built-in method, not an expired call)
		avg := s.runAvg.Load() // a lost update between workers costs nothing
		s.runAvg.Store(avg + (int64(d)-avg)/8)
	}
	return body
}

// ackBody is the ACK of a CAST or notification whose handler has run,
// carrying its outcome; nil when its sender asked for none.
func ackBody(r *Request, o castOutcome) []byte {
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
func duplicateAck(r *Request, o castOutcome) []byte {
	if o.Code == envelope.CodeOK {
		return nil
	}
	return ackBody(r, o)
}

// Cancel cancels the context of the CALL id if its handler is running
// (proxy.Canceler): the caller has given up. Its reply still goes out, and
// the caller's reply table drops it as late.
func (s *Server) Cancel(id envelope.ID) bool {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	lazy := s.running[id]
	if lazy == nil {
		return false
	}
	lazy.cancelNow()
	s.sv.cancelled.Add(1)
	return true
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
func (s *Server) runCast(r *Request, start time.Duration) (castOutcome, time.Duration) {
	m := &r.Msg
	if m.Kind == envelope.KindNotify {
		s.sv.notificationsRun.Add(1)
	} else {
		s.sv.castsRun.Add(1)
	}
	var o castOutcome
	_, d, err := s.run(s.ctx, r, start)
	if err != nil {
		o.Code, o.ErrType, o.ErrMsg, _ = errorFields(err)
		s.noteCastError(m, o.Code, err, s.sv.castErrors.Add(1))
		if m.Kind == envelope.KindNotify {
			o = castOutcome{}
		}
	}
	return s.casts.finish(m.ID, o), d
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
			refused = &s.sv.fanoutsRefused
		case m.Kind == envelope.KindCast && m.Flags&envelope.FlagNoAck != 0:
			refused, what = &s.sv.directNoMethod, "unacknowledged cast"
		}
		if refused != nil {
			if n := refused.Add(1); n&(n-1) == 0 {
				s.sv.rt.log.Warn(what+" refused: the server has no such method; dropped", append(envelope.LogAttrs(m), "server", s.name, "topic", m.Topic, "method", m.Method, "refused_total", n)...)
			}
			return
		}
	}
	if failed&(failed-1) == 0 {
		s.sv.rt.log.Warn("cast handler failed", append(envelope.LogAttrs(m), "server", s.name, "method", m.Method, "err", err, "failed_total", failed)...)
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
func (s *Server) respond(r *Request) ([]byte, time.Duration) {
	m := &r.Msg
	ctx := s.ctx
	if m.Deadline != 0 && time.Now().After(time.Unix(0, m.Deadline)) {
		// The caller has given up already: running would be wasted.
		s.sv.expired.Add(1)
		return nil, 0
	}
	if Reserved(m.Method) {
		// A built-in method: no handler to cancel or monitor, no time.
		rep, err := s.introspect(m.Method)
		return s.answerOf(ctx, m, rep, err), 0
	}
	if m.Deadline != 0 {
		deadline := time.Unix(0, m.Deadline)
		lazy := &lazyDeadline{parent: ctx, deadline: deadline}
		s.runMu.Lock()
		if s.running == nil {
			s.running = make(map[envelope.ID]*lazyDeadline)
		}
		s.running[m.ID] = lazy
		s.runMu.Unlock()
		defer func() {
			s.runMu.Lock()
			delete(s.running, m.ID)
			s.runMu.Unlock()
			lazy.release()
		}()
		ctx = lazy
	}
	if every := monitorEvery(m); every > 0 && !s.inline {
		defer s.startHeartbeat(r, every).stop()
	}
	rep, d, err := s.run(ctx, r, s.clock())
	return s.answerOf(ctx, m, rep, err), d
}

// answerOf encodes the REPLY or ERROR of the CALL m, whose handler (run
// with ctx) returned rep and err; nil when it cannot be encoded (logged).
func (s *Server) answerOf(ctx context.Context, m *envelope.Message, rep Reply, err error) []byte {
	out := envelope.Message{ID: m.ID}
	if err == nil {
		out.Kind, out.Flags = envelope.KindReply, rep.Flags
	} else {
		var own bool
		out.Kind = envelope.KindError
		out.Code, out.ErrType, out.ErrMsg, own = errorFields(err)
		if own {
			s.sv.handlerErrors.Add(1)
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
	if max := s.sv.cfg.MaxMessageSize; max > 0 && len(rep.Payload) > max {
		out = envelope.Message{Kind: envelope.KindError, ID: m.ID, Code: envelope.CodeTooLarge, ErrType: envelope.CodeTooLarge.String(),
			ErrMsg: fmt.Sprintf("reply of %d bytes over the limit of %d", len(rep.Payload), max)}
		rep.Payload = nil
	}
	out.Payload = rep.Payload
	body, err := envelope.Encode(&out)
	if err != nil {
		s.sv.rt.log.Error("encode reply", "server", s.name, "err", err)
		return nil
	}
	return body
}

// run calls dispatch, turning a panic into a RemoteError, and counts the
// run, and its time d since start (a clock reading), in its method's
// record. d is the one measure of a handler's time: the quick-run average
// reads it too.
func (s *Server) run(ctx context.Context, req *Request, start time.Duration) (rep Reply, d time.Duration, err error) {
	rec := s.record(req.Msg.Method)
	if rec != nil {
		rec.requests.Add(1)
	}
	defer func() {
		if p := recover(); p != nil {
			s.sv.panics.Add(1)
			s.sv.rt.log.Error("handler panicked", append(envelope.LogAttrs(&req.Msg), "server", s.name, "method", req.Msg.Method, "panic", p, "stack", string(debug.Stack()))...)
			err = &RemoteError{Type: remoteTypePanic, Message: fmt.Sprint(p)}
		}
		d = max(s.clock()-start, 1)
		if rec != nil {
			rec.finish(d, err)
		} else if errors.Is(err, ErrNoSuchMethod) {
			s.noSuchMethod.Add(1)
		}
	}()
	rep, err = s.dispatch(ctx, req)
	return rep, 0, err
}

// OfferDirect hands a direct cast to the server's in-order lane without
// blocking (proxy.DirectServer).
func (s *Server) OfferDirect(r *Request) proxy.Offer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.enqueue(s.direct, r)
}

// runDirect runs one direct cast or fanout (the direct lane's worker).
func (s *Server) runDirect(r *Request) {
	if r.Msg.Kind == envelope.KindFanout {
		s.sv.fanoutsRun.Add(1)
	} else {
		s.sv.directRun.Add(1)
	}
	// One clock reading per message while the lane is busy: the end of
	// one run is the start of the next, already queued.
	start := s.laneNext
	if start == 0 {
		start = s.clock()
	}
	_, d := s.runCast(r, start)
	s.laneNext = 0
	if len(s.direct.queue) > 0 {
		s.laneNext = start + d
	}
}
