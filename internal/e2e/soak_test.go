package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The soak run is not part of the tests CI runs: it takes minutes.
//
//	go test ./internal/e2e -run TestSoak -soak 5m -v -timeout 30m
var soak = flag.Duration("soak", 0, "run TestSoak for this long (0: skip it)")

// castTable is the size at which a server's cast de-duplication table
// stops growing (engine's dedupSize).
const castTable = 1 << 17

type soakStats struct {
	Server     string `json:"server"`
	Calls      uint64 `json:"calls"`
	Casts      uint64 `json:"casts"`
	Goroutines int    `json:"goroutines"`
	RSSKiB     int64  `json:"rss_kib"`
}

// rssOf reads a process's VmRSS in KiB.
func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return -1
}

// TestSoak: three hosts in network namespaces, calls and casts at about 80%
// of the measured maximum call rate for -soak, with one server's link cut
// for 20 s and Redis restarted in the middle. It reports what was sent,
// delivered, failed and lost, and the processes' RSS and goroutines at the
// start and the end.
func TestSoak(t *testing.T) {
	if *soak <= 0 {
		t.Skip("soak run: pass -soak DURATION (e.g. -soak 5m)")
	}
	c := startNetCluster(t, "soak", "9s")
	topic, in := c.topic, c.client
	statsOf := func(name string) soakStats {
		out, code := run(t, "ip", in("--json", "call", "--server", name, topic, "stats")...)
		var st soakStats
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("stats of %s: exit %d: %s", name, code, out)
		}
		return st
	}
	// The maximum: 8 callers as fast as the servers answer, 10 s.
	calib := spawn(t, "calibrate", "ip", in("--json", "bench", "client", "--topic", topic,
		"--pattern", "call", "--concurrency", "8", "--duration", "10s")...)
	waitExit(t, calib, time.Minute)
	maxRate := float64(benchResultOf(t, calib).OK) / 10
	target := 0.8 * maxRate
	t.Logf("maximum call rate %.0f/s; soak at %.0f/s: calls %.0f/s + casts %.0f/s for %v", maxRate, target, 0.6*target, 0.4*target, *soak)

	before := map[string]soakStats{"s1": statsOf("s1"), "s2": statsOf("s2")}
	dur := soak.String()
	timeout := "20s"
	calls := spawn(t, "calls", "ip", in("--timeout", timeout, "--json", "bench", "client", "--topic", topic,
		"--pattern", "call", "--concurrency", "8", "--rate", fmt.Sprint(0.6*target), "--duration", dur, "--drain", "15s")...)
	casts := spawn(t, "casts", "ip", in("--timeout", timeout, "--json", "bench", "client", "--topic", topic,
		"--pattern", "cast", "--concurrency", "8", "--rate", fmt.Sprint(0.4*target), "--duration", dur, "--drain", "15s")...)
	start := time.Now()
	at := func(frac float64, what string) {
		when := start.Add(time.Duration(frac * float64(*soak)))
		waitUntil(t, what, *soak, func() bool { return time.Now().After(when) })
	}
	at(0.1, "the warm-up")
	// A server's cast de-duplication table is bounded (castTable ids, about
	// 4.5 MiB: engine/dedup.go) and fills during the first minute here, so
	// growth is measured from when each server has run that many casts (or
	// from 35 % of the run, if the rate is too low for that).
	full := start.Add(time.Duration(0.35 * float64(*soak)))
	poll := time.NewTicker(time.Second)
	for time.Now().Before(full) && (statsOf("s1").Casts-before["s1"].Casts < castTable || statsOf("s2").Casts-before["s2"].Casts < castTable) {
		<-poll.C
	}
	poll.Stop()
	t.Logf("%v: growth measured from here", time.Since(start).Round(time.Second))
	rssStart := map[string]int64{"calls": rssOf(calls.cmd.Process.Pid), "casts": rssOf(casts.cmd.Process.Pid)}
	healthStart := map[string]soakStats{"s1": statsOf("s1"), "s2": statsOf("s2")}
	at(0.4, "the link cut")
	if err := ipCmd("link", "set", c.link1, "down"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: s1's link cut", time.Since(start).Round(time.Second))
	cut := time.Now()
	waitUntil(t, "20 s of cut link", time.Minute, func() bool { return time.Since(cut) > 20*time.Second })
	if err := ipCmd("link", "set", c.link1, "up"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: s1's link restored", time.Since(start).Round(time.Second))
	at(0.6, "the Redis restart")
	c.rds.Stop()
	t.Logf("%v: Redis stopped", time.Since(start).Round(time.Second))
	stopped := time.Now()
	waitUntil(t, "5 s without Redis", time.Minute, func() bool { return time.Since(stopped) > 5*time.Second })
	c.rds.Restart()
	t.Logf("%v: Redis restarted (empty)", time.Since(start).Round(time.Second))
	at(0.95, "the end of the run")
	rssEnd := map[string]int64{"calls": rssOf(calls.cmd.Process.Pid), "casts": rssOf(casts.cmd.Process.Pid)}
	healthEnd := map[string]soakStats{"s1": statsOf("s1"), "s2": statsOf("s2")}
	waitExit(t, calls, *soak)
	waitExit(t, casts, *soak)
	rc, rk := benchResultOf(t, calls), benchResultOf(t, casts)
	after := map[string]soakStats{"s1": statsOf("s1"), "s2": statsOf("s2")}
	var ranCalls, ranCasts uint64
	for _, s := range []string{"s1", "s2"} {
		ranCalls += after[s].Calls - before[s].Calls
		ranCasts += after[s].Casts - before[s].Casts
	}
	t.Logf("calls: sent %d, answered %d, failed with an error %d (first: %s), ran on the servers %d, lost %d", rc.Sent, rc.OK, rc.Errors, rc.FirstError, ranCalls, rc.Lost)
	t.Logf("casts: sent %d, acknowledged %d, failed with an error %d (first: %s), ran on the servers %d, lost %d", rk.Sent, rk.OK, rk.Errors, rk.FirstError, ranCasts, rk.Lost)
	for _, s := range []string{"s1", "s2"} {
		t.Logf("server %s: RSS %d → %d KiB, goroutines %d → %d", s, healthStart[s].RSSKiB, healthEnd[s].RSSKiB, healthStart[s].Goroutines, healthEnd[s].Goroutines)
	}
	for _, c := range []string{"calls", "casts"} {
		t.Logf("client %s: RSS %d → %d KiB", c, rssStart[c], rssEnd[c])
	}
	if rc.Lost != 0 || rk.Lost != 0 || rc.OK+rc.Errors != rc.Sent || rk.OK+rk.Errors != rk.Sent {
		t.Errorf("lost or unaccounted messages: calls %+v, casts %+v", rc, rk)
	}
	if ranCasts < uint64(rk.OK) {
		t.Errorf("%d casts acknowledged but only %d ran", rk.OK, ranCasts)
	}
	for _, s := range []string{"s1", "s2"} {
		a, b := healthStart[s], healthEnd[s]
		if float64(b.Goroutines) > 1.1*float64(a.Goroutines)+5 || float64(b.RSSKiB) > 1.1*float64(a.RSSKiB) {
			t.Errorf("server %s grew: goroutines %d → %d, RSS %d → %d KiB", s, a.Goroutines, b.Goroutines, a.RSSKiB, b.RSSKiB)
		}
	}
	for _, p := range c.servers {
		p.stop(t, syscall.SIGTERM)
	}
}
