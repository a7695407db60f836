package engine

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// MetaMonitor is the CALL metadata key by which a caller asks for
// heartbeats: the interval in milliseconds, in decimal. While the handler
// runs, the server answers ACK IN_PROGRESS at its start and then every
// interval; the caller gives up after MonitorMisses intervals without one
// (§22 of docs/design.md).
const MetaMonitor = ReservedMetaPrefix + "monitor"

// MonitorMisses is how many heartbeat intervals a monitored call waits
// without one before it fails with ErrServerLost.
const MonitorMisses = 2

// The bounds of a monitor interval: shorter would cost more messages than
// it saves time; a server clamps what it is asked for.
const (
	MinMonitor = 10 * time.Millisecond
	MaxMonitor = time.Hour
)

// ErrServerLost: a monitored call's server sent no heartbeat for
// MonitorMisses intervals. Its node may be fine; the server is not
// answering, and the call may have run.
var ErrServerLost = errors.New("zmqmsg: server lost")

// monitorMeta returns meta with the monitor entry for every (a copy: meta
// belongs to the caller's context).
func monitorMeta(meta map[string]string, every time.Duration) map[string]string {
	out := make(map[string]string, len(meta)+1)
	for k, v := range meta {
		out[k] = v
	}
	out[MetaMonitor] = strconv.FormatInt(every.Milliseconds(), 10)
	return out
}

// monitorEvery is the heartbeat interval m asks for, clamped; 0 when it
// asks for none or names no number.
func monitorEvery(m *envelope.Message) time.Duration {
	v, ok := m.Meta[MetaMonitor]
	if !ok || m.Kind != envelope.KindCall {
		return 0
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return 0
	}
	return min(max(time.Duration(min(ms, int64(MaxMonitor/time.Millisecond)))*time.Millisecond, MinMonitor), MaxMonitor)
}

// heartbeat sends the IN_PROGRESS ACKs of one monitored call while its
// handler runs on a worker.
type heartbeat struct {
	s     *Server
	r     *Request
	every time.Duration
	body  []byte

	mu    sync.Mutex
	done  bool
	timer *time.Timer
}

// startHeartbeat sends the first IN_PROGRESS for r now and the next ones
// every interval, until stop.
func (s *Server) startHeartbeat(r *Request, every time.Duration) *heartbeat {
	body, err := envelope.Encode(&envelope.Message{Kind: envelope.KindAck, ID: r.Msg.ID, Code: envelope.CodeInProgress, ErrType: envelope.CodeInProgress.String()})
	if err != nil {
		return nil
	}
	h := &heartbeat{s: s, r: r, every: every, body: body}
	h.mu.Lock()
	h.send()
	h.timer = time.AfterFunc(every, h.beat)
	h.mu.Unlock()
	return h
}

func (h *heartbeat) beat() {
	h.mu.Lock()
	defer h.mu.Unlock()
	// A handler that outlives its caller's deadline, or the Transport,
	// has nobody to keep waiting.
	if exp := expiry(&h.r.Msg); h.done || h.s.sv.rt.ctx.Err() != nil || (!exp.IsZero() && time.Now().After(exp)) {
		return
	}
	h.send()
	h.timer.Reset(h.every)
}

// send hands one IN_PROGRESS to the proxy (under h.mu: stop waits for it,
// so the final answer, sent after stop, never overtakes it).
func (h *heartbeat) send() {
	if h.s.px.Reply(h.s.sv.rt.ctx, h.r.Routing, expiry(&h.r.Msg), h.body) != nil {
		h.s.px.Counters().SendFailed.Add(1)
		return
	}
	h.s.sv.heartbeats.Add(1)
}

// stop ends the heartbeats; none is sent after it returns.
func (h *heartbeat) stop() {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.done = true
	h.timer.Stop()
	h.mu.Unlock()
}
