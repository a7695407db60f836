package redistest

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// Cluster is a Redis Cluster of masters only, started by StartCluster.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts masters cluster-enabled redis-servers (at least 3,
// as redis-cli requires), joins them with `redis-cli --cluster create`
// (no replicas) and waits until every node reports cluster_state:ok.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	cli := binary(t, "redis-cli")
	if masters < 3 {
		t.Fatalf("redistest: a cluster needs at least 3 masters, not %d", masters)
	}
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for range masters {
		s := newServer(t, freePort(t, true), t.TempDir(),
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000")
		s.start()
		c.nodes = append(c.nodes, s)
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, s := range c.nodes {
		waitUntil(t, "cluster_state:ok on "+s.Addr(), func() error {
			info, err := Command(s.Addr(), "CLUSTER", "INFO")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("cluster not ok")
			}
			return nil
		})
	}
	return c
}

// Addrs returns the addresses of the nodes.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		out[i] = s.Addr()
	}
	return out
}

// Nodes returns the node processes.
func (c *Cluster) Nodes() []*Server { return c.nodes }

// URL returns "redis+cluster://a1,a2,...", the form directory.ParseURL
// accepts.
func (c *Cluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }
