package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main() // a child process started by spawn: it is the CLI
	}
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait of these tests.
const testTimeout = 20 * time.Second

// result is one finished run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs the CLI in-process with env (nil: empty) and waits for it.
func cliRun(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut, mapEnv(env))
	return result{code, out.String(), errOut.String()}
}

// mem runs the CLI against the in-process directory.
func mem(t *testing.T, args ...string) result {
	t.Helper()
	return cliRun(t, nil, "", append([]string{"--directory", "memory:"}, args...)...)
}

func mapEnv(m map[string]string) env {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func (r result) want(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

// lines is an io.Writer that hands each complete line to a channel, and
// keeps everything written.
type lines struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	ch      chan string
}

func newLines() *lines { return &lines{ch: make(chan string, 1024)} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.ch <- string(l.partial[:i])
		l.partial = l.partial[i+1:]
	}
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// next returns the next line, failing the test after testTimeout.
func (l *lines) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-l.ch:
		return s
	case <-time.After(testTimeout):
		t.Fatalf("no output line within %v; so far: %q", testTimeout, l.String())
		return ""
	}
}

// background is a CLI run in a goroutine (listen, bench server).
type background struct {
	stdout, stderr *lines
	cancel         context.CancelFunc
	done           chan int
}

// start runs the CLI in the background; the test's cleanup stops it
// (as SIGINT would) and checks that it exits 0.
func start(t *testing.T, env map[string]string, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{stdout: newLines(), stderr: newLines(), cancel: cancel, done: make(chan int, 1)}
	go func() { b.done <- run(ctx, args, strings.NewReader(""), b.stdout, b.stderr, mapEnv(env)) }()
	t.Cleanup(func() {
		if code := b.stop(t); code != 0 {
			t.Errorf("%v: exit %d\nstderr: %s", args, code, b.stderr.String())
		}
	})
	return b
}

// stop cancels the run (idempotent) and returns its exit code.
func (b *background) stop(t *testing.T) int {
	t.Helper()
	b.cancel()
	select {
	case code := <-b.done:
		b.done <- code // for a second stop
		return code
	case <-time.After(testTimeout):
		t.Fatalf("did not stop within %v; stderr: %s", testTimeout, b.stderr.String())
		return -1
	}
}

// wait waits for the run to end by itself and returns its exit code.
func (b *background) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-b.done:
		b.done <- code
		return code
	case <-time.After(testTimeout):
		t.Fatalf("did not end within %v; stderr: %s", testTimeout, b.stderr.String())
		return -1
	}
}

// benchServer starts `bench server` on topic and returns it once it has
// printed its readiness line, with the server's name.
func benchServer(t *testing.T, topic string, extra ...string) (*background, string) {
	t.Helper()
	b := start(t, nil, append([]string{"bench", "server", "--directory", "memory:", "--topic", topic}, extra...)...)
	var ready struct {
		Ready  bool
		Server string
	}
	line := b.stdout.next(t)
	if err := json.Unmarshal([]byte(line), &ready); err != nil || !ready.Ready || ready.Server == "" {
		t.Fatalf("readiness line %q: %v", line, err)
	}
	return b, ready.Server
}

// decode parses the JSON s into a T, failing the test if it does not.
func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output %q is not the JSON expected: %v", s, err)
	}
	return v
}

var _ io.Writer = (*lines)(nil)
