package redistest

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	if _, err := Command(s.Addr(), "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	if v, err := Command(s.Addr(), "GET", "k"); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") {
		t.Fatalf("URL = %q", s.URL())
	}
	s.Stop()
	if err := Ping(s.Addr()); err == nil {
		t.Fatal("PING answered after Stop")
	}
	s.Stop() // idempotent
	s.Restart()
	if v, err := Command(s.Addr(), "GET", "k"); err != nil || v != "" {
		t.Fatalf("after Restart GET = %q, %v; want no data", v, err)
	}
}

func TestSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	g := StartSentinel(t, 1, 3)
	if m, err := g.CurrentMaster(); err != nil || m != g.Master().Addr() {
		t.Fatalf("CurrentMaster = %q, %v; want %s", m, err, g.Master().Addr())
	}
	start := time.Now()
	g.KillMaster()
	waitUntil(t, "failover", func() error {
		m, err := g.CurrentMaster()
		if err == nil && m == g.Master().Addr() {
			return errNotYet
		}
		return err
	})
	t.Logf("failover after %v", time.Since(start))
}

func TestCluster(t *testing.T) {
	c := StartCluster(t, 3)
	if len(c.Addrs()) != 3 || !strings.HasPrefix(c.URL(), "redis+cluster://") {
		t.Fatalf("Addrs = %v, URL = %q", c.Addrs(), c.URL())
	}
}
