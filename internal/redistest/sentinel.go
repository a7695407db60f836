package redistest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// MasterName is the name under which a Sentinel group monitors its master.
const MasterName = "mymaster"

// Sentinel is a Sentinel group started by StartSentinel: one master, its
// replicas and the sentinels watching them.
type Sentinel struct {
	t         testing.TB
	master    *Server
	replicas  []*Server
	sentinels []*Server
}

// StartSentinel starts one master, replicas replicas of it and sentinels
// sentinels (quorum 2, or 1 with a single sentinel; down-after-milliseconds
// 1000; failover-timeout 2000), all on free 127.0.0.1 ports. It returns
// once every replica is in sync and every sentinel knows the replicas and
// the other sentinels, so that a failover can start at once.
func StartSentinel(t testing.TB, replicas, sentinels int) *Sentinel {
	t.Helper()
	if sentinels < 1 {
		t.Fatal("redistest: StartSentinel needs at least one sentinel")
	}
	g := &Sentinel{t: t}
	g.master = newServer(t, freePort(t, false), t.TempDir())
	g.master.start()
	for range replicas {
		r := newServer(t, freePort(t, false), t.TempDir(),
			"--replicaof", "127.0.0.1", strconv.Itoa(g.master.port))
		r.start()
		g.replicas = append(g.replicas, r)
	}
	for _, r := range g.replicas {
		waitUntil(t, "replica "+r.Addr()+" in sync", func() error {
			info, err := Command(r.Addr(), "INFO", "replication")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "master_link_status:up") {
				return fmt.Errorf("master link not up")
			}
			return nil
		})
	}

	quorum := min(2, sentinels)
	for range sentinels {
		dir := t.TempDir()
		port := freePort(t, false)
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor %s 127.0.0.1 %d %d
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 2000
sentinel parallel-syncs %s 1
`, port, dir, MasterName, g.master.port, quorum, MasterName, MasterName, MasterName)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		s := newServer(t, port, dir, "--sentinel")
		s.conf = conf
		// Sentinels keep their state in their config file; drop the data
		// node defaults that do not apply.
		s.args = []string{"--sentinel", "--logfile", ""}
		s.start()
		g.sentinels = append(g.sentinels, s)
	}
	for _, s := range g.sentinels {
		waitUntil(t, "sentinel "+s.Addr()+" to discover its group", func() error {
			reply, err := Command(s.Addr(), "SENTINEL", "MASTER", MasterName)
			if err != nil {
				return err
			}
			f := fields(reply)
			if f["num-slaves"] != strconv.Itoa(replicas) || f["num-other-sentinels"] != strconv.Itoa(sentinels-1) {
				return fmt.Errorf("num-slaves=%s num-other-sentinels=%s", f["num-slaves"], f["num-other-sentinels"])
			}
			return nil
		})
	}
	return g
}

// fields turns a flat "name\nvalue\n..." reply into a map.
func fields(reply string) map[string]string {
	parts := strings.Split(reply, "\n")
	m := make(map[string]string, len(parts)/2)
	for i := 0; i+1 < len(parts); i += 2 {
		m[parts[i]] = parts[i+1]
	}
	return m
}

// Sentinels returns the addresses of the sentinels.
func (g *Sentinel) Sentinels() []string {
	out := make([]string, len(g.sentinels))
	for i, s := range g.sentinels {
		out[i] = s.Addr()
	}
	return out
}

// URL returns "redis+sentinel://s1,s2,.../mymaster", the form
// directory.ParseURL accepts.
func (g *Sentinel) URL() string {
	return "redis+sentinel://" + strings.Join(g.Sentinels(), ",") + "/" + MasterName
}

// Master returns the master started by StartSentinel (after a failover it
// is no longer the master).
func (g *Sentinel) Master() *Server { return g.master }

// CurrentMaster asks the sentinels which address is the master now.
func (g *Sentinel) CurrentMaster() (string, error) {
	var last error
	for _, s := range g.sentinels {
		reply, err := Command(s.Addr(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName)
		if err != nil {
			last = err
			continue
		}
		hp := strings.Split(reply, "\n")
		if len(hp) != 2 {
			last = fmt.Errorf("unexpected reply %q", reply)
			continue
		}
		return net.JoinHostPort(hp[0], hp[1]), nil
	}
	return "", last
}

// KillMaster kills the original master with SIGKILL (a crash) and waits for
// it to exit. The sentinels then promote a replica.
func (g *Sentinel) KillMaster() { g.master.Kill() }
