package engine

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// The built-in methods every server answers without user code (§21 of
// docs/design.md). Their answers are JSON whatever the Transport's codec.
const (
	ReservedMethodPrefix = "zmqmsg."
	PingMethod           = "zmqmsg.ping"
	InfoMethod           = "zmqmsg.info"
	StatsMethod          = "zmqmsg.stats"
)

// ErrReservedMethod: Serve was given a method name that starts with
// ReservedMethodPrefix.
var ErrReservedMethod = errors.New("zmqmsg: method name reserved for introspection")

// Reserved reports whether method is one of the names the built-in methods
// use (it starts with ReservedMethodPrefix).
func Reserved(method string) bool { return strings.HasPrefix(method, ReservedMethodPrefix) }

// Service is what a server publishes about itself: its methods (also in
// its directory entry) and the user's metadata, answered by zmqmsg.info.
type Service struct {
	Methods  []string
	Metadata map[string]string
}

// Ping is a server's answer to zmqmsg.ping.
type Ping struct {
	Server  string        `json:"server"`
	Node    string        `json:"node"`
	Version string        `json:"version"`
	Started time.Time     `json:"started"`
	Uptime  time.Duration `json:"uptime_ns"`
}

// Info is a server's answer to zmqmsg.info.
type Info struct {
	Ping
	Exchange string            `json:"exchange"`
	Topic    string            `json:"topic"`
	Methods  []string          `json:"methods"`  // never null
	Metadata map[string]string `json:"metadata"` // never null
	Protocol int               `json:"protocol"` // the envelope version it speaks
}

// ServerStats is a server's answer to zmqmsg.stats: a record per method
// it offers, and the requests for a method it does not offer.
type ServerStats struct {
	Ping
	Exchange     string        `json:"exchange"`
	Topic        string        `json:"topic"`
	Methods      []MethodStats `json:"methods"`
	NoSuchMethod uint64        `json:"no_such_method"`
}

// MethodStats counts the requests of one method on one server, of every
// kind (CALL, CAST, FANOUT), since the server started.
type MethodStats struct {
	Method         string        `json:"method"`
	Requests       uint64        `json:"requests"`           // handlers started
	Errors         uint64        `json:"errors"`             // handlers that returned an error or panicked
	InFlight       int64         `json:"in_flight"`          // handlers running now
	ProcessingTime time.Duration `json:"processing_time_ns"` // total run time of the finished handlers
	AverageTime    time.Duration `json:"average_time_ns"`    // ProcessingTime / finished handlers
	LastError      string        `json:"last_error,omitempty"`
	LastErrorAt    time.Time     `json:"last_error_at,omitzero"`
}

// methodRecord is one method's counters on one server: atomics, so that a
// handler pays for no lock. It is the record the introspection and the
// metrics read.
type methodRecord struct {
	requests, done atomic.Uint64 // handlers started, finished
	nanos          atomic.Int64  // run time of the finished ones
	errors         atomic.Uint64
	last           atomic.Pointer[lastError]
}

type lastError struct {
	text string
	at   time.Time
}

// lastErrorMax bounds the text a record keeps of its last error.
const lastErrorMax = 1024

func (m *methodRecord) finish(d time.Duration, err error) {
	m.nanos.Add(int64(d))
	m.done.Add(1) // after nanos: a reader that sees it sees its time
	if err != nil {
		m.errors.Add(1)
		text := err.Error()
		if len(text) > lastErrorMax {
			text = text[:lastErrorMax]
		}
		m.last.Store(&lastError{text: text, at: time.Now()})
	}
}

// snapshot reads the record; done before nanos, requests after both, so
// that the average is over runs whose time is in, and in_flight is never
// negative.
func (m *methodRecord) snapshot(method string) MethodStats {
	done := m.done.Load()
	nanos := m.nanos.Load()
	st := MethodStats{Method: method, Requests: m.requests.Load(), Errors: m.errors.Load(), ProcessingTime: time.Duration(nanos)}
	st.InFlight = int64(st.Requests - min(done, st.Requests))
	if done > 0 {
		// nanos may hold a run or two that done does not count yet: at
		// most that much above the true average.
		st.AverageTime = time.Duration(nanos / int64(done))
	}
	if le := m.last.Load(); le != nil {
		st.LastError, st.LastErrorAt = le.text, le.at
	}
	return st
}

// newRecords makes a record per method, read-only after: no lock on the
// path.
func newRecords(methods []string) map[string]*methodRecord {
	recs := make(map[string]*methodRecord, len(methods))
	for _, m := range methods {
		recs[m] = new(methodRecord)
	}
	return recs
}

// clock reads the monotonic clock: time since the server started (one
// clock reading, where time.Now takes two).
func (s *Server) clock() time.Duration { return time.Since(s.started) }

// record returns method's record, nil for a method the server does not
// offer.
func (s *Server) record(method string) *methodRecord { return s.records[method] }

// ping is the identity part of every introspection answer.
func (s *Server) ping() Ping {
	return Ping{Server: s.name, Node: s.reg.Node.ID(), Version: Version(), Started: s.started, Uptime: time.Since(s.started)}
}

// Info returns what zmqmsg.info answers.
func (s *Server) Info() Info {
	in := Info{Ping: s.ping(), Exchange: s.key.Exchange, Topic: s.key.Topic, Methods: append([]string{}, s.reg.Methods...),
		Metadata: maps.Clone(s.meta), Protocol: int(envelope.Version)}
	if in.Metadata == nil {
		in.Metadata = map[string]string{}
	}
	return in
}

// Stats returns what zmqmsg.stats answers: a record per method, sorted.
func (s *Server) Stats() ServerStats {
	st := ServerStats{Ping: s.ping(), Exchange: s.key.Exchange, Topic: s.key.Topic, Methods: make([]MethodStats, 0, len(s.records)), NoSuchMethod: s.noSuchMethod.Load()}
	for _, m := range s.reg.Methods {
		st.Methods = append(st.Methods, s.records[m].snapshot(m))
	}
	return st
}

// introspect answers a built-in method, in JSON.
func (s *Server) introspect(method string) (Reply, error) {
	var v any
	switch method {
	case PingMethod:
		v = s.ping()
	case InfoMethod:
		v = s.Info()
	case StatsMethod:
		v = s.Stats()
	default:
		s.noSuchMethod.Add(1)
		return Reply{}, fmt.Errorf("%w: %q (built in: %s, %s, %s)", ErrNoSuchMethod, method, PingMethod, InfoMethod, StatsMethod)
	}
	payload, err := json.Marshal(v)
	if err != nil {
		return Reply{}, fmt.Errorf("zmqmsg: encode %s: %w", method, err)
	}
	return Reply{Payload: payload}, nil
}

var version = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if bi.Main.Path == "github.com/zmqmsg/zmqmsg" {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/zmqmsg/zmqmsg" {
			if d.Replace != nil && d.Replace.Version != "" {
				return d.Replace.Version
			}
			if d.Replace != nil {
				return "(devel)" // replaced by a directory
			}
			return d.Version
		}
	}
	return "unknown"
})

// Version is the zmqmsg module's version in this binary's build info
// ("(devel)" when built from its own tree).
func Version() string { return version() }

// ServerStats returns the records of every server of this node's process
// (listeners included), sorted by exchange, topic and server.
func (e *Engine) ServerStats() []ServerStats {
	sv := e.serving
	sv.mu.Lock()
	servers := make([]*Server, 0, len(sv.servers))
	for s := range sv.servers {
		servers = append(servers, s)
	}
	sv.mu.Unlock()
	out := make([]ServerStats, 0, len(servers))
	for _, s := range servers {
		out = append(out, s.Stats())
	}
	slices.SortFunc(out, func(a, b ServerStats) int {
		return cmp.Or(cmp.Compare(a.Exchange, b.Exchange), cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Server, b.Server))
	})
	return out
}
