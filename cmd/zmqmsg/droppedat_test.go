package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

// bench client accounts for every lost message by the hop that dropped it,
// with real processes: a bench server joined to a node proxy daemon, and a
// server "ghost" the directory lists on the daemon's node but that no
// process serves. The direct casts sent to ghost are dropped by the daemon
// (direct_dropped); those the server's tiny lane (--queue 1) cannot take
// at once wait (the lane pushes back): its node drops none. What the hops
// dropped adds up to what was lost.
func TestBenchDroppedAt(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.URL() + "?prefix=" + t.Name()
	env := map[string]string{"ZMQMSG_DIRECTORY": url}
	ipc := t.TempDir()
	d, err := zmqmsg.StartProxy(zmqmsg.ProxyConfig{Dir: ipc, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	server := spawn(t, env, "bench", "server", "--topic", "t-drop", "--name", "s1", "--proxy-dir", ipc, "--queue", "1")
	var ready struct{ Ready bool }
	if l := server.stdout.next(t); json.Unmarshal([]byte(l), &ready) != nil || !ready.Ready {
		t.Fatalf("bench server: %q", l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	dir, err := directory.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dir.Close() }) // the test's own connection
	ghost := directory.Registration{Key: directory.Key{Topic: "t-drop"}, Server: "ghost", Node: d.Node(), Methods: []string{"sink"}}
	if err := dir.Register(ctx, ghost, time.Minute); err != nil {
		t.Fatal(err)
	}
	daemon := "daemon " + d.Node().ID()

	client := spawn(t, env, "bench", "client", "--json", "--topic", "t-drop", "--pattern", "direct",
		"--count", "400", "--concurrency", "2", "--timeout", "2s")
	if code := client.wait(t, testTimeout); code != exitError {
		t.Fatalf("bench client: exit %d, want 1 (lost)\n%s\n%s", code, client.stdout.String(), client.stderr.String())
	}
	r := decode[benchResult](t, client.stdout.next(t))
	var sum int64
	for _, cs := range r.DroppedAt {
		for _, v := range cs {
			sum += v
		}
	}
	if r.Servers != 1 || r.OK != 400 || r.Lost == nil || *r.Lost == 0 || sum != *r.Lost ||
		r.Unexplained == nil || *r.Unexplained != 0 || len(r.DroppedAt) != 2 ||
		r.DroppedAt[daemon]["direct_dropped"] == 0 || r.DroppedAt["server s1"] == nil ||
		r.Dropped != 0 || r.DroppedAt["server s1"]["direct_dropped"] != 0 {
		t.Errorf("dropped_at does not account for lost: %+v\n%s", r, client.stdout.String())
	}

	// The table: a "lost" line, then the hops that dropped, aligned.
	client = spawn(t, env, "bench", "client", "--topic", "t-drop", "--pattern", "direct",
		"--count", "200", "--concurrency", "2", "--timeout", "2s")
	if code := client.wait(t, testTimeout); code != exitError {
		t.Fatalf("bench client: exit %d, want 1 (lost)\n%s\n%s", code, client.stdout.String(), client.stderr.String())
	}
	out := client.stdout.String()
	m := regexp.MustCompile(`(?m)^lost (\d+), dropped at \(a direct cast only where no server is left for it\):\n((?:  .*\n)+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no dropped-at lines:\n%s", out)
	}
	var total int64
	col := -1
	seen := map[string]bool{}
	row := regexp.MustCompile(`^  (\S+(?: \S+)?) +(\d+)(?:  \((\w+)\))?$`)
	for _, l := range strings.Split(strings.TrimRight(m[2], "\n"), "\n") {
		f := row.FindStringSubmatchIndex(l)
		if f == nil {
			t.Fatalf("line %q", l)
		}
		if col >= 0 && f[5] != col {
			t.Errorf("numbers not aligned:\n%s", m[2])
		}
		col = f[5]
		label := l[f[2]:f[3]]
		n, err := strconv.ParseInt(l[f[4]:f[5]], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seen[label] = true
		switch label {
		case daemon, "server s1":
			total += n
		case "unexplained":
			if n != 0 {
				t.Errorf("unexplained %d:\n%s", n, out)
			}
		default:
			t.Errorf("unexpected line %q", l)
		}
		if label == daemon && n == 0 {
			t.Errorf("daemon line %q", l)
		}
	}
	if !seen[daemon] || !seen["unexplained"] {
		t.Errorf("lines missing:\n%s", out)
	}
	if fmt.Sprint(total) != m[1] {
		t.Errorf("the hops add up to %d, lost %s:\n%s", total, m[1], out)
	}
}

// A hop whose counters cannot be read is unknown, and so is then what is
// unexplained; refusals answered to their sender are apart, and only the
// pattern's drop counters explain lost messages.
func TestDropAccount(t *testing.T) {
	before := map[string]hopCounters{
		"daemon n1":   {"direct_dropped": 10, "fanout_dropped": 1, "overloaded": 2},
		"node n2":     nil,
		"server s1":   {"direct_dropped": 0, "expired": 1},
		"daemon gone": {"direct_dropped": 3},
	}
	after := map[string]hopCounters{
		"daemon n1":   {"direct_dropped": 15, "fanout_dropped": 4, "overloaded": 7},
		"server s1":   {"direct_dropped": 2, "expired": 1},
		"daemon gone": nil,
	}
	a := account("direct", before, after)
	if a.dropped["daemon n1"]["direct_dropped"] != 5 || len(a.dropped["daemon n1"]) != 1 || a.dropped["server s1"]["direct_dropped"] != 2 ||
		a.dropped["node n2"] != nil || a.dropped["daemon gone"] != nil || len(a.dropped) != 4 {
		t.Errorf("dropped %v", a.dropped)
	}
	if len(a.refused) != 1 || a.refused["daemon n1"]["overloaded"] != 5 {
		t.Errorf("refused %v", a.refused)
	}
	if sum, known := a.total(); sum != 7 || known {
		t.Errorf("total %d, %v", sum, known)
	}
	if sum, known := account("direct", before, map[string]hopCounters{"daemon n1": before["daemon n1"]}).total(); sum != 0 || known {
		t.Errorf("hops missing after: %d, %v", sum, known)
	}

	lost := int64(9)
	r := benchResult{Pattern: "direct", Lost: &lost, DroppedAt: a.dropped, RefusedAt: a.refused}
	var out bytes.Buffer
	(&cli{stdout: &out}).printDrops(r, "9")
	want := `lost 9, dropped at (a direct cast only where no server is left for it):
  daemon gone  unknown  (its counters could not be read)
  daemon n1          5  (direct_dropped)
  node n2      unknown  (its counters could not be read)
  server s1          2  (direct_dropped)
  unexplained        ?
refused with an answer to the sender (errors or resends, not lost):
  daemon n1  5  (overloaded)
`
	if out.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out.String(), want)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"daemon gone":null`) || !strings.Contains(string(b), `"unexplained":null`) {
		t.Errorf("JSON %s", b)
	}
}
