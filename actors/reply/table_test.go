package reply

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zmqmsg/zmqmsg/envelope"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recv returns the result waiting on ch, failing the test if there is none
// within a second.
func recv(t *testing.T, ch <-chan Result) Result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(time.Second):
		t.Fatal("no result delivered")
		return Result{}
	}
}

// empty fails the test if ch holds a result.
func empty(t *testing.T, ch <-chan Result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("unexpected second result %+v", r)
	default:
	}
}

func mustRegister(t *testing.T, tb *Table, id envelope.ID, tag string) <-chan Result {
	t.Helper()
	ch, err := tb.Register(id, tag)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return ch
}

func TestRegisterDeliverExactlyOnce(t *testing.T) {
	tb := NewTable()
	id := envelope.NewID()
	ch := mustRegister(t, tb, id, "n1")
	if st := tb.Stats(); st.Registered != 1 || st.Pending != 1 {
		t.Fatalf("after register: %+v", st)
	}
	m := envelope.Message{Kind: envelope.KindReply, ID: id, Payload: []byte("hello")}
	if !tb.Deliver(m) {
		t.Fatal("first Deliver reported no waiting call")
	}
	r := recv(t, ch)
	if r.Err != nil || r.Msg.ID != id || string(r.Msg.Payload) != "hello" {
		t.Fatalf("got %+v", r)
	}
	// A duplicate reply is dropped and counted as unmatched.
	if tb.Deliver(m) {
		t.Fatal("second Deliver of the same id reported a waiting call")
	}
	empty(t, ch)
	st := tb.Stats()
	want := Stats{Registered: 1, Delivered: 1, Unmatched: 1}
	if st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
}

func TestDeliverUnknownIsUnmatched(t *testing.T) {
	tb := NewTable()
	other := mustRegister(t, tb, envelope.NewID(), "n1")
	if tb.Deliver(envelope.Message{Kind: envelope.KindReply, ID: envelope.NewID()}) {
		t.Fatal("Deliver of an unknown id reported a waiting call")
	}
	empty(t, other)
	st := tb.Stats()
	if st.Unmatched != 1 || st.Late != 0 || st.Delivered != 0 || st.Pending != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestForgetThenDeliverIsLate(t *testing.T) {
	tb := NewTable()
	id := envelope.NewID()
	ch := mustRegister(t, tb, id, "n1")
	tb.Forget(id)
	if st := tb.Stats(); st.Pending != 0 {
		t.Fatalf("pending after forget: %+v", st)
	}
	if tb.Deliver(envelope.Message{Kind: envelope.KindReply, ID: id}) {
		t.Fatal("Deliver after Forget reported a waiting call")
	}
	empty(t, ch)
	st := tb.Stats()
	if st.Late != 1 || st.Unmatched != 0 || st.Delivered != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Forgetting an unknown id does not make its reply late.
	unknown := envelope.NewID()
	tb.Forget(unknown)
	tb.Deliver(envelope.Message{Kind: envelope.KindReply, ID: unknown})
	if st := tb.Stats(); st.Late != 1 || st.Unmatched != 1 {
		t.Fatalf("stats after forgetting an unknown id %+v", st)
	}
}

func TestFail(t *testing.T) {
	tb := NewTable()
	id := envelope.NewID()
	ch := mustRegister(t, tb, id, "n1")
	boom := errors.New("boom")
	tb.Fail(id, boom)
	if r := recv(t, ch); !errors.Is(r.Err, boom) {
		t.Fatalf("got %+v", r)
	}
	tb.Fail(id, boom) // no longer pending: no second result
	empty(t, ch)
	if tb.Deliver(envelope.Message{Kind: envelope.KindReply, ID: id}) {
		t.Fatal("Deliver after Fail reported a waiting call")
	}
	if st := tb.Stats(); st.Failed != 1 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCloseFailsPendingAndRefusesRegister(t *testing.T) {
	tb := NewTable()
	const n = 100
	chans := make([]<-chan Result, n)
	for i := range chans {
		chans[i] = mustRegister(t, tb, envelope.NewID(), "n1")
	}
	down := errors.New("transport down")
	tb.Close(down)
	for i, ch := range chans {
		if r := recv(t, ch); !errors.Is(r.Err, down) {
			t.Fatalf("call %d: got %+v", i, r)
		}
	}
	if _, err := tb.Register(envelope.NewID(), "n1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after Close: %v, want ErrClosed", err)
	}
	tb.Close(errors.New("second close")) // idempotent: nothing more failed
	for _, ch := range chans {
		empty(t, ch)
	}
	st := tb.Stats()
	if st.Failed != n || st.Pending != 0 || st.Registered != n {
		t.Fatalf("stats %+v", st)
	}
}

func TestCloseNilErrorIsErrClosed(t *testing.T) {
	tb := NewTable()
	ch := mustRegister(t, tb, envelope.NewID(), "n1")
	tb.Close(nil)
	if r := recv(t, ch); !errors.Is(r.Err, ErrClosed) {
		t.Fatalf("got %+v", r)
	}
}

func TestFailTaggedOnlyFailsThatTag(t *testing.T) {
	tb := NewTable()
	const perTag = 50
	var a, b []<-chan Result
	var bIDs []envelope.ID
	for range perTag {
		a = append(a, mustRegister(t, tb, envelope.NewID(), "node-a"))
		id := envelope.NewID()
		bIDs = append(bIDs, id)
		b = append(b, mustRegister(t, tb, id, "node-b"))
	}
	gone := errors.New("node-a went away")
	if n := tb.FailTagged("node-a", gone); n != perTag {
		t.Fatalf("FailTagged failed %d calls, want %d", n, perTag)
	}
	for _, ch := range a {
		if r := recv(t, ch); !errors.Is(r.Err, gone) {
			t.Fatalf("node-a call: got %+v", r)
		}
	}
	for _, ch := range b {
		empty(t, ch)
	}
	if n := tb.FailTagged("node-a", gone); n != 0 {
		t.Fatalf("second FailTagged failed %d calls", n)
	}
	st := tb.Stats()
	if st.Failed != perTag || st.Pending != perTag {
		t.Fatalf("stats %+v", st)
	}
	// node-b's calls are still answerable.
	for i, id := range bIDs {
		if !tb.Deliver(envelope.Message{Kind: envelope.KindReply, ID: id}) {
			t.Fatalf("node-b call %d was not pending", i)
		}
		if r := recv(t, b[i]); r.Err != nil || r.Msg.ID != id {
			t.Fatalf("node-b call %d: %+v", i, r)
		}
	}
}

// call is one registration made by the concurrency test.
type call struct {
	id        envelope.ID
	ch        <-chan Result
	forgotten bool
}

// TestConcurrentAccounting runs Register, Deliver (first and duplicate),
// Forget, FailTagged and Close from 32 goroutines, then checks that every
// registered call got exactly one result or was forgotten, and that the
// table's counters add up.
func TestConcurrentAccounting(t *testing.T) {
	tb := NewTable()
	const (
		workers    = 24 // register, and deliver / forget / leave pending
		deliverers = 6  // deliver ids handed over by the workers
		perWorker  = 400
	)
	toDeliver := make(chan envelope.ID, 1024)
	// Worker 0 signals halfway through its own calls, then waits for Close:
	// its remaining registrations must fail, while the others run on.
	halfway, closed := make(chan struct{}), make(chan struct{})
	var registeredOK, closedRegs, deliverCalls, delivered atomic.Uint64

	var wg, workersWG sync.WaitGroup
	calls := make([][]call, workers)
	for w := range workers {
		wg.Add(1)
		workersWG.Add(1)
		go func() {
			defer wg.Done()
			defer workersWG.Done()
			tag := []string{"a", "b", "c", "d"}[w%4]
			for i := range perWorker {
				if w == 0 && i == perWorker/2 {
					close(halfway)
					<-closed
				}
				id := envelope.NewID()
				ch, err := tb.Register(id, tag)
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("register: %v", err)
					}
					closedRegs.Add(1)
					continue
				}
				registeredOK.Add(1)
				c := call{id: id, ch: ch}
				m := envelope.Message{Kind: envelope.KindReply, ID: id}
				switch i % 5 {
				case 0: // answered here, then a duplicate
					deliverCalls.Add(2)
					if tb.Deliver(m) {
						delivered.Add(1)
					}
					if tb.Deliver(m) {
						delivered.Add(1)
					}
				case 1: // answered by another goroutine
					toDeliver <- id
				case 2: // the caller gives up, then the reply comes
					tb.Forget(id)
					c.forgotten = true
					deliverCalls.Add(1)
					if tb.Deliver(m) {
						delivered.Add(1)
					}
				case 3: // the caller gives up while another goroutine answers
					toDeliver <- id
					tb.Forget(id)
					c.forgotten = true
				case 4: // left pending: failed by FailTagged or Close
				}
				calls[w] = append(calls[w], c)
			}
		}()
	}
	for range deliverers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range toDeliver {
				deliverCalls.Add(1)
				if tb.Deliver(envelope.Message{Kind: envelope.KindReply, ID: id}) {
					delivered.Add(1)
				}
			}
		}()
	}
	closeErr := errors.New("closing")
	tagErr := errors.New("node c down")
	wg.Add(2)
	go func() { // FailTagged while everything runs
		defer wg.Done()
		<-halfway
		tb.FailTagged("c", tagErr)
	}()
	go func() { // Close halfway through
		defer wg.Done()
		<-halfway
		tb.Close(closeErr)
		close(closed)
	}()
	go func() { workersWG.Wait(); close(toDeliver) }()

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("concurrent test did not finish (a Deliver or Fail blocked?)")
	}

	st := tb.Stats()
	var results, forgottenEmpty, total uint64
	for _, cs := range calls {
		for _, c := range cs {
			total++
			n := len(c.ch)
			switch {
			case n > 1:
				t.Fatalf("call %s got %d results", c.id, n)
			case n == 0 && !c.forgotten:
				t.Fatalf("call %s was neither answered nor forgotten", c.id)
			case n == 0:
				forgottenEmpty++
			default:
				results++
				r := <-c.ch
				if r.Err == nil && r.Msg.ID != c.id {
					t.Fatalf("call %s got the reply of %s", c.id, r.Msg.ID)
				}
				if r.Err != nil && !errors.Is(r.Err, closeErr) && !errors.Is(r.Err, tagErr) {
					t.Fatalf("call %s failed with %v", c.id, r.Err)
				}
			}
		}
	}
	if total != registeredOK.Load() || st.Registered != total {
		t.Fatalf("registered: table %d, calls %d, counted %d", st.Registered, total, registeredOK.Load())
	}
	if closedRegs.Load() < perWorker/2 {
		t.Fatalf("%d registrations refused after Close, want at least %d", closedRegs.Load(), perWorker/2)
	}
	if st.Pending != 0 {
		t.Fatalf("%d calls still pending after Close", st.Pending)
	}
	if st.Delivered != delivered.Load() {
		t.Fatalf("Delivered %d, Deliver returned true %d times", st.Delivered, delivered.Load())
	}
	if st.Delivered+st.Failed != results {
		t.Fatalf("Delivered %d + Failed %d != results received %d", st.Delivered, st.Failed, results)
	}
	if results+forgottenEmpty != total {
		t.Fatalf("results %d + forgotten %d != registered %d", results, forgottenEmpty, total)
	}
	if st.Delivered+st.Late+st.Unmatched != deliverCalls.Load() {
		t.Fatalf("Delivered %d + Late %d + Unmatched %d != Deliver calls %d",
			st.Delivered, st.Late, st.Unmatched, deliverCalls.Load())
	}
	t.Logf("stats %+v", st)
}

func BenchmarkTableRegisterDeliver(b *testing.B) {
	tb := NewTable()
	var seq atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var id envelope.ID
		for pb.Next() {
			// Sequential ids spread over the shards (the shard is id[15]).
			binary.BigEndian.PutUint64(id[8:], seq.Add(1))
			ch, err := tb.Register(id, "node")
			if err != nil {
				b.Fatal(err)
			}
			if !tb.Deliver(envelope.Message{Kind: envelope.KindReply, ID: id}) {
				b.Fatal("not delivered")
			}
			<-ch
		}
	})
}

// An IN_PROGRESS ACK is an interim answer: handed over (at most one unread),
// while the call stays registered for its final answer, which never blocks.
func TestInterimAnswer(t *testing.T) {
	tb := NewTable()
	id := envelope.NewID()
	ch, err := tb.Register(id, "node")
	if err != nil {
		t.Fatal(err)
	}
	interim := envelope.Message{Kind: envelope.KindAck, ID: id, Code: envelope.CodeInProgress}
	for i := 0; i < 3; i++ {
		if !tb.Deliver(interim) {
			t.Fatalf("interim answer %d: no call waiting", i)
		}
	}
	if !tb.Deliver(envelope.Message{Kind: envelope.KindAck, ID: id, Code: envelope.CodeOK}) {
		t.Fatal("final answer: no call waiting")
	}
	if r := <-ch; r.Msg.Code != envelope.CodeInProgress {
		t.Fatalf("first result %v, want the interim answer", r.Msg.Code)
	}
	if r := <-ch; r.Msg.Code != envelope.CodeOK {
		t.Fatalf("second result %v, want the final answer", r.Msg.Code)
	}
	if tb.Deliver(envelope.Message{Kind: envelope.KindAck, ID: id, Code: envelope.CodeOK}) {
		t.Fatal("the call stayed registered after its final answer")
	}
	if st := tb.Stats(); st.Pending != 0 {
		t.Fatalf("%d pending", st.Pending)
	}
}
