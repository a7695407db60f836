// Package redistest starts real redis-server processes for tests: a
// standalone server, a Sentinel group (master, replicas, sentinels) or a
// Cluster. Each process listens on a free 127.0.0.1 port, keeps no data on
// disk (no RDB, no AOF) and is killed when the test ends. It is imported by
// tests only.
//
// When redis-server or redis-cli is not installed the test is skipped with a
// message saying which binary is missing (CI installs the redis-server
// Debian package, which provides all three modes).
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a process may take to answer PING, and a
// Sentinel group or Cluster to become ready.
const startTimeout = 15 * time.Second

// stopTimeout is how long Stop waits after SIGTERM before it kills.
const stopTimeout = 5 * time.Second

// Server is one redis-server process (a data node or a sentinel).
type Server struct {
	t    testing.TB
	bin  string
	port int
	conf string   // config file given first, or ""; sentinels need one
	args []string // without --port
	dir  string
	log  string // path of the process's log file

	mu   sync.Mutex
	cmd  *exec.Cmd  // nil while stopped
	done chan error // receives cmd.Wait()'s result once; nil while stopped
}

// binary returns the path of name or skips the test.
func binary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("redistest: %s not found in PATH (install the Debian package redis-server, which also provides redis-cli and sentinel mode): %v", name, err)
	}
	return p
}

// Start starts a standalone redis-server on a free 127.0.0.1 port and waits
// until it answers PING. The server is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := newServer(t, freePort(t, false), t.TempDir())
	s.start()
	return s
}

// StartBind is Start with the server also listening on the given addresses
// (for clients in test network namespaces); protected mode is off so that
// they may connect without a password.
func StartBind(t testing.TB, addrs ...string) *Server {
	t.Helper()
	extra := append([]string{"--bind", "127.0.0.1"}, addrs...)
	s := newServer(t, freePort(t, false), t.TempDir(), append(extra, "--protected-mode", "no")...)
	s.start()
	return s
}

// newServer prepares a data node in dir; extra arguments follow the
// defaults and may override them.
func newServer(t testing.TB, port int, dir string, extra ...string) *Server {
	t.Helper()
	args := []string{
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", "",
	}
	s := &Server{
		t:    t,
		bin:  binary(t, "redis-server"),
		port: port,
		args: append(args, extra...),
		dir:  dir,
		log:  filepath.Join(dir, "redis.log"),
	}
	t.Cleanup(s.Stop)
	return s
}

// start runs the process and waits until it answers PING.
func (s *Server) start() {
	s.t.Helper()
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		s.t.Fatalf("redistest: %s already running", s.Addr())
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.mu.Unlock()
		s.t.Fatal(err)
	}
	var args []string
	if s.conf != "" {
		args = append(args, s.conf) // a config file must come first
	}
	args = append(args, s.args...)
	args = append(args, "--port", strconv.Itoa(s.port))
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	logf.Close() // the child has its own descriptor
	if err != nil {
		s.mu.Unlock()
		s.t.Fatalf("redistest: start %s: %v", s.bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		if err := Ping(s.Addr()); err == nil {
			return
		}
		select {
		case err := <-done:
			s.mu.Lock()
			s.cmd, s.done = nil, nil
			s.mu.Unlock()
			s.t.Fatalf("redistest: %s exited at start (%v); log:\n%s", s.Addr(), err, s.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: %s does not answer PING after %v; log:\n%s", s.Addr(), startTimeout, s.Log())
		}
	}
}

// Addr returns "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the TCP port, which stays the same across Restart.
func (s *Server) Port() int { return s.port }

// URL returns "redis://127.0.0.1:port", the form directory.ParseURL accepts.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Log returns the process's log so far, for failure messages.
func (s *Server) Log() string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Stop sends SIGTERM, waits up to 5 s for the process to exit, then kills
// it and waits. Stopping a stopped server does nothing.
func (s *Server) Stop() { s.stop(syscall.SIGTERM) }

// Kill kills the process with SIGKILL (a crash: no goodbye to clients or
// sentinels) and waits for it to exit.
func (s *Server) Kill() { s.stop(syscall.SIGKILL) }

func (s *Server) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // in case it is paused
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd, s.done = nil, nil
}

// Pause stops the process with SIGSTOP: connections stay open but nothing
// is answered, like a hung server or a network partition. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Restart stops the server (if running) and starts it again on the same
// port, with no data: nothing is persisted.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// freePort returns a port that was free a moment ago. With cluster set,
// port+10000 (the cluster bus) was free too. Another process may take it
// in between; the start then fails loudly.
func freePort(t testing.TB, cluster bool) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !cluster {
			l.Close()
			return port
		}
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		l.Close()
		if err == nil {
			l2.Close()
			return port
		}
	}
	t.Fatal("redistest: no free port")
	return 0
}

// Ping sends PING to addr and reports whether +PONG came back within 1 s.
func Ping(addr string) error {
	reply, err := Command(addr, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("PING %s: %q", addr, reply)
	}
	return nil
}

// Command sends one command (inline arguments without spaces) to addr and
// returns its reply: a simple or bulk string as is, an integer in decimal,
// an array as its elements joined by "\n". A Redis error reply is returned
// as an error. The whole exchange is bounded by 1 s.
func Command(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(conn))
}

// readReply reads one RESP2 reply.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		parts := make([]string, 0, max(n, 0))
		for range n {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("redistest: unexpected reply %q", line)
}

// errNotYet is a condition that does not hold yet.
var errNotYet = errors.New("not yet")

// waitUntil polls cond every 50 ms until it holds or startTimeout passes,
// then fails the test with what and the last error.
func waitUntil(t testing.TB, what string, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: timed out after %v waiting for %s: %v", startTimeout, what, err)
		case <-tick.C:
		}
	}
}
