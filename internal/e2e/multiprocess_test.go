// Package e2e holds the multi-process proof of zmqmsg: real binaries, a real
// redis-server, real processes killed with real signals. It has no code of
// its own, only this test.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// proc is a child process whose output lines are collected.
type proc struct {
	name  string
	cmd   *exec.Cmd
	lines chan string // stdout and stderr lines, in order per stream
	mu    sync.Mutex
	all   bytes.Buffer // everything, for failure messages
	done  chan struct{}
	err   error // Wait's result, once done is closed
}

// spawn starts bin with args; the process is killed when the test ends if
// it is still running.
func spawn(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), lines: make(chan string, 4096), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var wg sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := bufio.NewScanner(r)
			s.Buffer(make([]byte, 64<<10), 1<<20)
			for s.Scan() {
				p.mu.Lock()
				p.all.WriteString(s.Text() + "\n")
				p.mu.Unlock()
				select {
				case p.lines <- s.Text():
				default: // nobody waits for lines any more: keep the log only
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.all.String()
}

// waitLine returns the first line containing want.
func (p *proc) waitLine(t *testing.T, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-p.lines:
			if strings.Contains(l, want) {
				return l
			}
		case <-p.done:
			t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.err, want, p.output())
		case <-deadline:
			t.Fatalf("%s did not print %q within %v:\n%s", p.name, want, timeout, p.output())
		}
	}
}

// stop sends sig and waits (bounded) for the exit; it returns the exit code.
func (p *proc) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s ignored %v for 15s:\n%s", p.name, sig, p.output())
	}
	return p.cmd.ProcessState.ExitCode()
}

// run runs the CLI to completion and returns its stdout and exit code.
func run(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code <= 0 {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, stderr.String())
	}
	if code != 0 {
		t.Logf("%s %v: exit %d\nstdout: %s\nstderr: %s", filepath.Base(bin), args, code, stdout.String(), stderr.String())
	}
	return stdout.String(), code
}

// build compiles the commands once per test binary run.
func build(t *testing.T) (cli, daemon string) {
	t.Helper()
	dir := t.TempDir()
	cli, daemon = filepath.Join(dir, "zmqmsg"), filepath.Join(dir, "zmqmsg-proxy")
	for out, pkg := range map[string]string{cli: "github.com/zmqmsg/zmqmsg/cmd/zmqmsg", daemon: "github.com/zmqmsg/zmqmsg/cmd/zmqmsg-proxy"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return cli, daemon
}

type benchResult struct {
	Servers    int    `json:"servers"`
	Pools      int    `json:"pools"`
	Sent       int64  `json:"sent"`
	OK         int64  `json:"ok"`
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error"`
	Expected   int64  `json:"expected"`
	Received   int64  `json:"received"`
	Lost       int64  `json:"lost"`
}

type serverStats struct {
	Server        string `json:"server"`
	Calls         uint64 `json:"calls"`
	Fanouts       uint64 `json:"fanouts"`
	Notifications uint64 `json:"notifications"`
}

type entry struct {
	Server string `json:"server"`
}

// The multi-process proof: a Redis server, a node proxy daemon with
// two service processes behind it (IPC), a third service process on a
// second node address (127.0.0.2), and the CLI as the client.
func TestMultiProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes; skipped with -short")
	}
	cli, daemon := build(t)
	rds := redistest.Start(t)
	dirURL := rds.URL()
	ipc := filepath.Join(t.TempDir(), "zmqmsg")
	const topic = "proof"
	const ttl = "3s"

	// The daemon on free ports of 127.0.0.1.
	d := spawn(t, "zmqmsg-proxy", daemon, "--host", "127.0.0.1", "--call-port", "0", "--fanout-port", "0",
		"--notify-port", "0", "--cast-port", "0", "--ipc-dir", ipc, "--log-format", "json", "--stats-interval", "0")
	d.waitLine(t, `"msg":"node proxy serving"`, 20*time.Second)

	// Three service processes: m1 and m2 behind the daemon (pool pa), n3 a
	// node of its own on 127.0.0.2 (pool pb).
	cliArgs := func(args ...string) []string { return append([]string{"--directory", dirURL}, args...) }
	servers := map[string]*proc{
		"m1": spawn(t, "m1", cli, cliArgs("bench", "server", "--topic", topic, "--name", "m1", "--pool", "pa", "--proxy-dir", ipc, "--ttl", ttl)...),
		"m2": spawn(t, "m2", cli, cliArgs("bench", "server", "--topic", topic, "--name", "m2", "--pool", "pa", "--proxy-dir", ipc, "--ttl", ttl)...),
		"n3": spawn(t, "n3", cli, cliArgs("--host", "127.0.0.2", "bench", "server", "--topic", topic, "--name", "n3", "--pool", "pb", "--ttl", ttl)...),
	}
	for _, p := range servers {
		p.waitLine(t, `"ready":true`, 30*time.Second)
	}

	listServers := func() []string {
		out, code := run(t, cli, cliArgs("--json", "servers", topic)...)
		if code != 0 {
			return nil
		}
		var es []entry
		if err := json.Unmarshal([]byte(out), &es); err != nil {
			t.Fatalf("servers output %q: %v", out, err)
		}
		var names []string
		for _, e := range es {
			if !strings.Contains(e.Server, "/") { // skip the listeners
				names = append(names, e.Server)
			}
		}
		return names
	}
	if got := listServers(); strings.Join(got, ",") != "m1,m2,n3" {
		t.Fatalf("directory lists %v, want m1, m2, n3", got)
	}
	stats := func(name string) serverStats {
		out, code := run(t, cli, cliArgs("--json", "call", "--server", name, topic, "stats")...)
		if code != 0 {
			t.Fatalf("stats of %s: exit %d", name, code)
		}
		var st serverStats
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("stats of %s: %q: %v", name, out, err)
		}
		return st
	}
	bench := func(args ...string) benchResult {
		out, code := run(t, cli, cliArgs(append([]string{"--json", "bench", "client", "--topic", topic}, args...)...)...)
		var r benchResult
		if err := json.Unmarshal([]byte(lastLine(out)), &r); err != nil {
			t.Fatalf("bench %v: %q: %v", args, out, err)
		}
		if code != 0 || r.Errors != 0 || r.Lost != 0 || r.Received != r.Expected {
			t.Fatalf("bench %v: exit %d, %+v", args, code, r)
		}
		return r
	}

	// Calls spread over all three servers (two processes behind the
	// daemon, one on the other node).
	before := map[string]uint64{}
	for name := range servers {
		before[name] = stats(name).Calls
	}
	r := bench("--pattern", "call", "--concurrency", "6", "--count", "600", "--duration", "30s")
	t.Logf("calls: %+v", r)
	for name := range servers {
		if n := stats(name).Calls - before[name]; n < 50 {
			t.Fatalf("server %s ran %d of 600 calls", name, n)
		}
	}
	// A fanout reaches all three; notifications reach each pool once.
	r = bench("--pattern", "fanout", "--concurrency", "2", "--count", "100", "--duration", "30s")
	if r.Servers != 3 || r.Expected != 300 {
		t.Fatalf("fanout: %+v, want 3 servers and 300 deliveries", r)
	}
	r = bench("--pattern", "notify", "--concurrency", "2", "--count", "100", "--duration", "30s")
	if r.Pools != 2 || r.Expected != 200 {
		t.Fatalf("notify: %+v, want 2 pools and 200 deliveries", r)
	}
	var pa, pb uint64
	for name := range servers {
		if name == "n3" {
			pb += stats(name).Notifications
		} else {
			pa += stats(name).Notifications
		}
	}
	if pa != 100 || pb != 100 {
		t.Fatalf("pool pa ran %d notifications, pool pb %d; want 100 each", pa, pb)
	}

	// Redis restarted mid-run: no call to a known server fails. The client
	// runs 6 s; Redis is stopped after 1.5 s and comes back (empty, no
	// persistence) 2 s later.
	load := spawn(t, "bench-client", cli, cliArgs("--json", "bench", "client", "--topic", topic, "--pattern", "call",
		"--concurrency", "4", "--duration", "6s", "--drain", "10s")...)
	deadline := time.Now().Add(1500 * time.Millisecond)
	waitUntil(t, "load to run 1.5s", 5*time.Second, func() bool { return time.Now().After(deadline) })
	rds.Stop()
	stopped := time.Now()
	waitUntil(t, "an outage of 2s", 5*time.Second, func() bool { return time.Since(stopped) > 2*time.Second })
	rds.Restart()
	select {
	case <-load.done:
	case <-time.After(40 * time.Second):
		t.Fatalf("bench client did not finish:\n%s", load.output())
	}
	var during benchResult
	if err := json.Unmarshal([]byte(lastLine(load.output())), &during); err != nil {
		t.Fatalf("bench output: %v\n%s", err, load.output())
	}
	if code := load.cmd.ProcessState.ExitCode(); code != 0 || during.Errors != 0 || during.Lost != 0 || during.OK != during.Sent {
		t.Fatalf("calls across a Redis restart: exit %d, %+v\n%s", code, during, load.output())
	}
	t.Logf("calls across a Redis restart: %d sent, %d answered, %d errors, %d lost", during.Sent, during.OK, during.Errors, during.Lost)
	// The servers registered again by themselves.
	waitUntil(t, "the servers to register again after the Redis restart", 15*time.Second, func() bool {
		return strings.Join(listServers(), ",") == "m1,m2,n3"
	})

	// m2 killed with SIGKILL: it vanishes from lookups after its TTL, and
	// the others keep serving meanwhile.
	servers["m2"].stop(t, syscall.SIGKILL)
	killed := time.Now()
	r = bench("--pattern", "call", "--concurrency", "4", "--count", "200", "--duration", "30s")
	t.Logf("calls right after the SIGKILL: %+v", r)
	waitUntil(t, "m2 to leave the directory", 20*time.Second, func() bool {
		return strings.Join(listServers(), ",") == "m1,n3"
	})
	t.Logf("the killed server left the directory %v after SIGKILL (TTL %s)", time.Since(killed).Round(100*time.Millisecond), ttl)

	// Everything stops cleanly.
	for _, name := range []string{"m1", "n3"} {
		if code := servers[name].stop(t, syscall.SIGTERM); code != 0 {
			t.Errorf("%s exit %d after SIGTERM:\n%s", name, code, servers[name].output())
		}
	}
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("daemon exit %d after SIGTERM:\n%s", code, d.output())
	}
	if !strings.Contains(d.output(), `"msg":"stopped"`) {
		t.Errorf("daemon did not log its stop:\n%s", d.output())
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// waitUntil polls cond every 50 ms until it holds or timeout passes.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}
