package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

// The hops of a bench run are the places on the messages' way that count
// what they drop: each bench server (its stats: its node's proxy, which
// hands messages to the server's lanes, and the lanes), and each node proxy
// daemon of the servers (the counters its call port answers with). An
// embedded node's own counters are its bench server's proxy again: the
// server's hop has them.

// droppedCounters are, by pattern, the counters of the pattern's messages
// dropped with no answer to the sender: what "lost" is made of. The other
// patterns' messages are answered when refused: the sender counts an error.
var droppedCounters = map[string][]string{
	"direct": {"direct_dropped"},
	"fanout": {"fanout_dropped"},
}

// refusedCounters count requests refused or failed with an answer to the
// sender (an error there, or a resend), and one-way messages run as an
// error (a method the server lacks: counted as received). No lost message
// is counted there.
var refusedCounters = []string{"no_servers", "overloaded", "refused", "failed_lost", "send_failed",
	"send_failures", "expired", "direct_refused", "fanouts_refused"}

// hopCounters are one hop's counters by name; nil: they could not be read.
type hopCounters map[string]uint64

func serverHop(name string) string { return "server " + name }

func daemonHop(id string) string { return "daemon " + id }

// benchHops are the hops' counters before a run, and the daemons to read
// again after it, by hop name.
type benchHops struct {
	before  map[string]hopCounters
	daemons map[string]directory.Node
}

// readHops snapshots the hops of the servers whose stats are before, and
// whose nodes are nodes (by server name). A node whose counters cannot be
// read (too old to answer, gone) is the hop "node ID", unknown: it may be
// a daemon.
func (c *cli) readHops(ctx context.Context, n *node, before map[string]benchStats, nodes map[string]directory.Node) benchHops {
	h := benchHops{before: map[string]hopCounters{}, daemons: map[string]directory.Node{}}
	seen := map[string]bool{}
	for name, s := range before {
		h.before[serverHop(name)] = s.counters()
		node := nodes[name]
		id := node.ID()
		if seen[id] {
			continue
		}
		seen[id] = true
		a, err := c.nodeStats(ctx, n, node)
		switch {
		case err != nil:
			c.log.Warn("bench: a node's counters cannot be read; what it drops is unknown", "node", id, "err", err)
			h.before["node "+id] = nil
		case a.Role == "daemon":
			h.before[daemonHop(id)] = a.Counters
			h.daemons[daemonHop(id)] = node
		}
	}
	return h
}

// nodeStats asks node for its proxy's counters, within --timeout and
// maxDrainCall.
func (c *cli) nodeStats(ctx context.Context, n *node, node directory.Node) (zmqmsg.NodeStats, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(c.g.timeout, maxDrainCall))
	defer cancel()
	return n.t.NodeStats(sctx, node)
}

// dropAccount is where a run's lost messages were dropped: by hop, the
// deltas of the counters of the pattern's drops (dropped; nil for a hop
// whose counters could not be read before or after) and of the refusals
// (refused; non-zero ones only).
type dropAccount struct {
	dropped map[string]map[string]int64
	refused map[string]map[string]int64
}

func account(pattern string, before, after map[string]hopCounters) dropAccount {
	a := dropAccount{dropped: map[string]map[string]int64{}, refused: map[string]map[string]int64{}}
	for hop, b := range before {
		af, ok := after[hop]
		if b == nil || !ok || af == nil {
			a.dropped[hop] = nil
			continue
		}
		delta := func(names []string) map[string]int64 {
			m := map[string]int64{}
			for _, k := range names {
				if d := int64(af[k]) - int64(b[k]); d != 0 {
					m[k] = d
				}
			}
			return m
		}
		a.dropped[hop] = delta(droppedCounters[pattern])
		if r := delta(refusedCounters); len(r) > 0 {
			a.refused[hop] = r
		}
	}
	return a
}

// total is the sum of what the hops that could be read dropped, and
// whether every hop could be.
func (a dropAccount) total() (sum int64, known bool) {
	known = true
	for _, cs := range a.dropped {
		if cs == nil {
			known = false
		}
		for _, v := range cs {
			sum += v
		}
	}
	return sum, known
}

// printHops prints one aligned line per hop with something counted: its
// total and its counters, or "unknown" (nil counters). extra lines
// (label, value) follow.
func printHops(w io.Writer, hops map[string]map[string]int64, extra ...[2]string) {
	type line struct{ label, value, detail string }
	var lines []line
	for _, hop := range slices.Sorted(maps.Keys(hops)) {
		cs := hops[hop]
		if cs == nil {
			lines = append(lines, line{hop, "unknown", "(its counters could not be read)"})
			continue
		}
		var sum int64
		for _, v := range cs {
			sum += v
		}
		if sum == 0 {
			continue
		}
		names := slices.Sorted(maps.Keys(cs))
		if len(names) > 1 {
			for i, k := range names {
				names[i] = k + " " + strconv.FormatInt(cs[k], 10)
			}
		}
		lines = append(lines, line{hop, strconv.FormatInt(sum, 10), "(" + strings.Join(names, ", ") + ")"})
	}
	for _, e := range extra {
		lines = append(lines, line{e[0], e[1], ""})
	}
	lw, vw := 0, 0
	for _, l := range lines {
		lw, vw = max(lw, utf8.RuneCountInString(l.label)), max(vw, len(l.value))
	}
	for _, l := range lines {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  %-*s  %*s  %s", lw, l.label, vw, l.value, l.detail), " "))
	}
}
