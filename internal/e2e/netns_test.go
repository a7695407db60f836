package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

// Hosts built from network namespaces: a bridge in the test's namespace
// (10.99.0.254/24) and one namespace per host, each with a veth whose peer
// is on the bridge. Traffic stays inside these namespaces and the bridge.
type netLab struct {
	t      *testing.T
	bridge string
	tag    string
}

const labNet = "10.99.0"

// labSeq numbers the labs of this process.
var labSeq atomic.Int32

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetLab builds the bridge, or skips the test where namespaces cannot be
// made (not root, no ip command).
func newNetLab(t *testing.T) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root (CI runs them as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network namespace tests need the ip command (iproute2)")
	}
	// Unique per lab: a namespace whose processes are still exiting
	// outlives its test (ip netns del is lazy), and its links with it.
	tag := strconv.Itoa(os.Getpid()%10000) + string(rune('a'+labSeq.Add(1)%26))
	lab := &netLab{t: t, bridge: "zbr" + tag, tag: tag}
	if err := ipCmd("link", "add", lab.bridge, "type", "bridge"); err != nil {
		t.Skipf("cannot create a bridge here: %v", err)
	}
	t.Cleanup(func() { _ = ipCmd("link", "del", lab.bridge) })
	for _, args := range [][]string{
		{"addr", "add", labNet + ".254/24", "dev", lab.bridge},
		{"link", "set", lab.bridge, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	return lab
}

// host creates namespace n (10.99.0.n) attached to the bridge and returns
// its name and the name of its veth's bridge end (set it down to cut the
// host's link).
func (lab *netLab) host(n int) (ns, link string) {
	t := lab.t
	t.Helper()
	ns = fmt.Sprintf("zh%s-%d", lab.tag, n)
	link = fmt.Sprintf("zv%s-%d", lab.tag, n)
	inner := fmt.Sprintf("zi%s-%d", lab.tag, n)
	if err := ipCmd("netns", "add", ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ipCmd("netns", "del", ns) })
	for _, args := range [][]string{
		{"link", "add", link, "type", "veth", "peer", "name", inner},
		{"link", "set", inner, "netns", ns},
		{"link", "set", link, "master", lab.bridge},
		{"link", "set", link, "up"},
		{"-n", ns, "addr", "add", fmt.Sprintf("%s.%d/24", labNet, n), "dev", inner},
		{"-n", ns, "link", "set", inner, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	return ns, link
}

// netCluster is the cluster of the namespace tests: host 1 runs bench
// server s1 and host 2 bench server s2 of one topic, host 3 is the client
// host, and Redis listens on the bridge.
type netCluster struct {
	topic   string
	link1   string // host 1's link: set it down to cut s1 off
	rds     *redistest.Server
	servers map[string]*proc
	run     func(ns string, args ...string) []string // ip args: the CLI in namespace ns
	ns3     string
}

// startNetCluster builds the hosts and starts both servers with the given
// registration TTL; it returns once they are ready.
func startNetCluster(t *testing.T, topic, ttl string) *netCluster {
	t.Helper()
	lab := newNetLab(t)
	ns1, link1 := lab.host(1)
	ns2, _ := lab.host(2)
	ns3, _ := lab.host(3)
	cli, _ := build(t)
	rds := redistest.StartBind(t, labNet+".254")
	dirURL := fmt.Sprintf("redis://%s.254:%d", labNet, rds.Port())
	c := &netCluster{topic: topic, link1: link1, rds: rds, ns3: ns3}
	c.run = func(ns string, args ...string) []string {
		return append([]string{"netns", "exec", ns, cli, "--directory", dirURL}, args...)
	}
	c.servers = map[string]*proc{
		"s1": spawn(t, "s1", "ip", c.run(ns1, "--host", labNet+".1", "bench", "server", "--topic", topic, "--name", "s1", "--ttl", ttl)...),
		"s2": spawn(t, "s2", "ip", c.run(ns2, "--host", labNet+".2", "bench", "server", "--topic", topic, "--name", "s2", "--ttl", ttl)...),
	}
	for _, p := range c.servers {
		p.waitLine(t, `"ready":true`, 30*time.Second)
	}
	return c
}

// client returns the ip args that run the CLI on the client host.
func (c *netCluster) client(args ...string) []string {
	return c.run(c.ns3, append([]string{"--host", labNet + ".3"}, args...)...)
}

// benchResultOf returns the result line of a bench client run with --json
// (it exits 1 when it had errors, and may log before the result).
func benchResultOf(t *testing.T, p *proc) benchResult {
	t.Helper()
	for _, l := range strings.Split(p.output(), "\n") {
		if strings.HasPrefix(l, `{"pattern"`) {
			var r benchResult
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("%s result %q: %v", p.name, l, err)
			}
			return r
		}
	}
	t.Fatalf("%s printed no result:\n%s", p.name, p.output())
	return benchResult{}
}

// waitExit waits (bounded) for p to exit.
func waitExit(t *testing.T, p *proc, d time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%s did not finish:\n%s", p.name, p.output())
	}
}

// Three hosts: two servers and a client under load. One server's link is
// cut: its in-flight calls fail fast with a node-down error (ZMTP heartbeat
// timeout), traffic moves to the other server, and when the link returns the
// server takes calls again.
func TestNetnsLinkCut(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes; skipped with -short")
	}
	c := startNetCluster(t, "cut", "30s")
	// The client: 4 callers for 24 s, each call bounded by 20 s so that a
	// call on the cut link can only end early through node-down detection
	// (ZMTP heartbeat: PING every 2 s, dead after 6 s of silence).
	load := spawn(t, "client", "ip", c.client("--timeout", "20s", "--json", "bench", "client",
		"--topic", c.topic, "--pattern", "call", "--concurrency", "4", "--duration", "24s", "--drain", "5s")...)
	start := time.Now()
	waitUntil(t, "3 s of load", 10*time.Second, func() bool { return time.Since(start) > 3*time.Second })
	if err := ipCmd("link", "set", c.link1, "down"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	waitUntil(t, "9 s of cut link", 15*time.Second, func() bool { return time.Since(cut) > 9*time.Second })
	if err := ipCmd("link", "set", c.link1, "up"); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	waitExit(t, load, 60*time.Second)
	// The client's node-down log line says when it saw the cut.
	r := benchResultOf(t, load)
	var downAt time.Time
	for _, l := range strings.Split(load.output(), "\n") {
		if strings.Contains(l, "node down") {
			// Under --json the log lines are JSON too.
			var line struct {
				Time time.Time `json:"time"`
			}
			if err := json.Unmarshal([]byte(l), &line); err == nil {
				downAt = line.Time
			}
			break
		}
	}
	if downAt.IsZero() {
		t.Fatalf("the client never marked the node down:\n%s", load.output())
	}
	t.Logf("link cut at %v for %v; node marked down %v after the cut; %+v", cut.Sub(start).Round(100*time.Millisecond),
		restored.Sub(cut).Round(100*time.Millisecond), downAt.Sub(cut).Round(10*time.Millisecond), r)
	if d := downAt.Sub(cut); d > 10*time.Second {
		t.Fatalf("node marked down %v after the cut; the heartbeat timeout is 6 s", d)
	}
	// The calls in flight on the cut link (one per caller at most, plus any
	// sent before the node was marked down) failed with a node-down error,
	// long before their 20 s deadline; nothing else failed or was lost.
	if r.Errors == 0 || r.Errors > 8 {
		t.Fatalf("%d calls failed, want the few in flight on the cut link: %+v", r.Errors, r)
	}
	if !strings.Contains(r.FirstError, "down") {
		t.Fatalf("first error %q, want a node-down error", r.FirstError)
	}
	if r.Lost != 0 || r.OK+r.Errors != r.Sent {
		t.Fatalf("lost or unaccounted calls: %+v", r)
	}
	// Recovery: s1 answers again through the restored link.
	out, code := run(t, "ip", c.client("--timeout", "20s", "--json", "call", "--server", "s1", c.topic, "whoami")...)
	if code != 0 || !strings.Contains(out, "s1") {
		t.Fatalf("s1 after the link returned: exit %d, %s", code, out)
	}
}

// A host whose link is down before a client ever connects to it (its
// directory entry lives on): connecting hangs on SYN retries, so the
// client's ZMQ_CONNECT_TIMEOUT (2 s) ends the attempt and the call goes to
// the other host's server. One-shot CLI calls (10 s timeout) all succeed;
// one for the cut host's server by name fails as not delivered (exit 5,
// unavailable) instead of timing out (exit 3).
func TestNetnsCutHostNeverStallsCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes; skipped with -short")
	}
	c := startNetCluster(t, "cutfirst", "60s")
	if err := ipCmd("link", "set", c.link1, "down"); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		out, code := run(t, "ip", c.client("--timeout", "10s", "--json", "call", c.topic, "whoami")...)
		var got echoResult
		if code != 0 || json.Unmarshal([]byte(lastLine(out)), &got) != nil || got.Server != "s2" {
			t.Fatalf("call %d with s1's host cut off: exit %d, %q: want s2's answer", i, code, out)
		}
	}
	stderr, code := runErr(t, "ip", c.client("--timeout", "10s", "--json", "call", "--server", "s1", c.topic, "whoami")...)
	if code != 5 || !strings.Contains(stderr, `"type":"unavailable"`) || !strings.Contains(stderr, labNet+".1:") {
		t.Fatalf("call to s1 by name with its host cut off: exit %d, %s: want exit 5, unavailable, naming its node", code, stderr)
	}
}
