package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

// walkDoc is what ping, info and stats say alike about whom they ask, the
// servers that do not answer, and how they exit.
const walkDoc = `

Without TOPIC it asks the servers of every topic of --exchange (the default
exchange unless given) that the directory lists. --timeout bounds the
whole walk: a server still silent then is listed with a timeout. A server that did not answer has its error in place
of its answer, on a line after those of the servers that answered; with
--json, its element has "exchange", "topic", "server", "node", "error" and
"error_type" (the type of the exit codes' table).

Exit 0 when every server answered. When some did not, the others are printed
all the same, and a last line on stderr says how many did not answer: exit 5
(with --json type "unreached"). No server to ask is exit 5 (no_servers); a
directory that cannot be read, exit 6.`

var cmdPing = &command{
	name:    "ping",
	args:    "[TOPIC]",
	summary: "ask every server of TOPIC (or all topics) who it is, timing the round trip",
	doc: `Asks every server of TOPIC who it is (the built-in method zmqmsg.ping) and
prints a line per server: topic, server, node, zmqmsg version, uptime and
the round trip the CLI measured, from sending the request to its answer.
With --json, one JSON array: each element the server's answer ("server",
"node", "version", "started", "uptime_ns") with "exchange", "topic" and
"rtt_ms".` + walkDoc,
	minArgs: 0, maxArgs: 1,
	run: runPing,
}

var cmdInfo = &command{
	name:    "info",
	args:    "[TOPIC]",
	summary: "ask every server of TOPIC (or all topics) what it offers",
	doc: `Asks every server of TOPIC what it offers (the built-in method zmqmsg.info)
and prints a line per server: topic, server, node, the envelope version it
speaks, its zmqmsg version, uptime, the methods it offers (a long list is
cut short with "…+N") and the metadata its program served it with
(zmqmsg.ServeMetadata: key=value, sorted by key; "-" when none). With --json, one JSON array: each element
the server's answer ("exchange", "topic", "server", "node", "version",
"started", "uptime_ns", "methods", "metadata", "protocol").` + walkDoc,
	minArgs: 0, maxArgs: 1,
	run: runInfo,
}

var cmdStats = &command{
	name:    "stats",
	args:    "[TOPIC]",
	summary: "ask every server of TOPIC (or all topics) for its per-method counters",
	doc: `Asks every server of TOPIC for its per-method counters (the built-in method
zmqmsg.stats), counted since the server started over every kind of request
(call, cast, fanout), and prints a line per method of each server: topic,
server, method, requests (handlers started), errors (handlers that failed
or panicked), handlers running now, their average run time in milliseconds
and total in seconds, the last error (cut short) and when it happened.
Requests for a method the server does not offer are counted on a line
"(no such method)". With --json, one JSON array: each element the server's
answer ("server", "node", "version", "started", "uptime_ns", "methods":
[{"method", "requests", "errors", "in_flight", "processing_time_ns",
"average_time_ns", "last_error", "last_error_at"}], "no_such_method") with
"exchange" and "topic".` + walkDoc,
	minArgs: 0, maxArgs: 1,
	run: runStats,
}

// silentError: servers that ping, info or stats asked did not answer (a
// failure, a timeout, their node's refusal); the answers of the others were
// printed, and these servers with their error (exit 5).
type silentError struct {
	failed, total int
	first         error // the first of them by topic and server
}

func (e *silentError) Error() string {
	return fmt.Sprintf("%d of %d servers did not answer: %v", e.failed, e.total, e.first)
}

func (e *silentError) Unwrap() error { return e.first }

// answer is one server's answer to a built-in method (v), or why there is
// none (err).
type answer[T any] struct {
	topic, server, node string
	rtt                 time.Duration // from sending the request to its answer
	v                   T
	err                 error
}

// walk is what ping, info and stats ask: TOPIC of --exchange, or every
// topic of --exchange (Topic empty).
func (c *cli) walk(pos []string) zmqmsg.Target {
	t := zmqmsg.Target{Exchange: c.g.exchange}
	if len(pos) > 0 {
		t.Topic = pos[0]
	}
	return t
}

// walkName names a walk in messages: "(default)/TOPIC", or "exchange
// (default)".
func walkName(t zmqmsg.Target) string {
	if t.Topic != "" {
		return directory.Key{Exchange: t.Exchange, Topic: t.Topic}.String()
	}
	if t.Exchange == "" {
		return "exchange (default)"
	}
	return "exchange " + t.Exchange
}

func runPing(ctx context.Context, c *cli, pos []string) error {
	target := c.walk(pos)
	return c.withNode(ctx, directory.Key{Exchange: target.Exchange, Topic: target.Topic}, func(n *node, octx context.Context) error {
		rows, err := gather[zmqmsg.Ping](octx, n, target, zmqmsg.PingMethod)
		return walkDone(ctx, c, n, target, rows, err, c.printPing)
	})
}

func runInfo(ctx context.Context, c *cli, pos []string) error {
	target := c.walk(pos)
	return c.withNode(ctx, directory.Key{Exchange: target.Exchange, Topic: target.Topic}, func(n *node, octx context.Context) error {
		found, err := n.t.Discover(octx, target)
		rows := make([]answer[zmqmsg.ServiceInfo], 0, len(found))
		for _, d := range found {
			rows = append(rows, answer[zmqmsg.ServiceInfo]{topic: d.Topic, server: d.Server, node: d.Node, v: d.Info, err: d.Err})
		}
		return walkDone(ctx, c, n, target, rows, err, c.printInfo)
	})
}

func runStats(ctx context.Context, c *cli, pos []string) error {
	target := c.walk(pos)
	return c.withNode(ctx, directory.Key{Exchange: target.Exchange, Topic: target.Topic}, func(n *node, octx context.Context) error {
		rows, err := gather[zmqmsg.ServerStats](octx, n, target, zmqmsg.StatsMethod)
		return walkDone(ctx, c, n, target, rows, err, c.printStats)
	})
}

// gather calls method on every server of target's topic, or of every
// topic of its exchange (Transport.Gather), and returns the answers sorted
// by topic and server, with Gather's error.
func gather[T any](ctx context.Context, n *node, target zmqmsg.Target, method string) ([]answer[T], error) {
	var out []answer[T]
	err := n.t.Gather(ctx, target, method, nil, func(topic string, r zmqmsg.ServerReply) {
		a := answer[T]{topic: topic, server: r.Server, node: r.Node, rtt: r.Elapsed}
		a.err = r.Decode(&a.v)
		out = append(out, a)
	})
	sortAnswers(out)
	return out, err
}

func sortAnswers[T any](rows []answer[T]) {
	slices.SortFunc(rows, func(a, b answer[T]) int {
		return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.server, b.server))
	})
}

// walkDone prints the rows of c's walk of target with print and returns
// its outcome: err, what kept servers from being asked (the rows found
// before it are printed); ErrNoServers when there was none to ask; a
// *silentError when some did not answer.
func walkDone[T any](ctx context.Context, c *cli, n *node, target zmqmsg.Target, rows []answer[T], err error, print func([]answer[T]) error) error {
	what := c.cmd.name + " " + walkName(target)
	if err != nil {
		if target.Topic != "" {
			err = c.explain(ctx, n, directory.Key{Exchange: target.Exchange, Topic: target.Topic}, err)
		}
		err = fmt.Errorf("%s: %w", what, curveHint(err))
		if len(rows) == 0 {
			return err
		}
	} else if len(rows) == 0 {
		return fmt.Errorf("%s: %w", what, zmqmsg.ErrNoServers)
	}
	if perr := print(rows); perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	silent := &silentError{total: len(rows)}
	for _, r := range rows {
		if r.err != nil {
			if silent.failed++; silent.first == nil {
				silent.first = r.err
			}
		}
	}
	if silent.failed > 0 {
		return fmt.Errorf("%s: %w", what, silent)
	}
	return nil
}

// errorFields are "error" and "error_type" of a server that did not
// answer, in ping, info and stats --json; empty when it did.
func errorFields(err error) (msg, typ string) {
	if err == nil {
		return "", ""
	}
	_, typ = classify(err)
	return oneLine(err.Error()), typ
}

// The elements of ping, info and stats --json: the exchange, topic, server
// and node asked, then the server's answer, or its error. Each declares
// these fields itself: they hide the same names in the answer it embeds
// (a field of an embedded struct would clash with them instead), and a
// server that did not answer has only them.
// pingLine is one element of ping --json.
type pingLine struct {
	Exchange  string  `json:"exchange"`
	Topic     string  `json:"topic"`
	Server    string  `json:"server"`
	Node      string  `json:"node"`
	RTT       float64 `json:"rtt_ms,omitempty"`
	Error     string  `json:"error,omitempty"`
	ErrorType string  `json:"error_type,omitempty"`
	*zmqmsg.Ping
}

// infoLine is one element of info --json.
type infoLine struct {
	Exchange  string `json:"exchange"`
	Topic     string `json:"topic"`
	Server    string `json:"server"`
	Node      string `json:"node"`
	Error     string `json:"error,omitempty"`
	ErrorType string `json:"error_type,omitempty"`
	*zmqmsg.ServiceInfo
}

// statsLine is one element of stats --json.
type statsLine struct {
	Exchange  string `json:"exchange"`
	Topic     string `json:"topic"`
	Server    string `json:"server"`
	Node      string `json:"node"`
	Error     string `json:"error,omitempty"`
	ErrorType string `json:"error_type,omitempty"`
	*zmqmsg.ServerStats
}

func (c *cli) printPing(rows []answer[zmqmsg.Ping]) error {
	if c.g.json {
		lines := make([]pingLine, 0, len(rows))
		for _, r := range rows {
			l := pingLine{Exchange: c.g.exchange, Topic: r.topic, Server: r.server, Node: r.node}
			l.Error, l.ErrorType = errorFields(r.err)
			if r.err == nil {
				l.Ping, l.RTT = &r.v, ms(r.rtt)
			}
			lines = append(lines, l)
		}
		return c.printValue(lines)
	}
	return c.table("TOPIC\tSERVER\tNODE\tVERSION\tUPTIME\tRTT", func(tw *tabwriter.Writer) {
		for _, r := range answeredFirst(rows) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t", r.topic, r.server, dash(r.node))
			if r.err != nil {
				fmt.Fprintln(tw, errorCell(r.err))
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%.2fms\n", dash(r.v.Version), uptimeCell(r.v.Uptime), ms(r.rtt))
		}
	})
}

func (c *cli) printInfo(rows []answer[zmqmsg.ServiceInfo]) error {
	if c.g.json {
		lines := make([]infoLine, 0, len(rows))
		for _, r := range rows {
			l := infoLine{Exchange: c.g.exchange, Topic: r.topic, Server: r.server, Node: r.node}
			l.Error, l.ErrorType = errorFields(r.err)
			if r.err == nil {
				l.ServiceInfo = &r.v
			}
			lines = append(lines, l)
		}
		return c.printValue(lines)
	}
	return c.table("TOPIC\tSERVER\tNODE\tPROTOCOL\tVERSION\tUPTIME\tMETHODS\tMETADATA", func(tw *tabwriter.Writer) {
		for _, r := range answeredFirst(rows) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t", r.topic, r.server, dash(r.node))
			if r.err != nil {
				fmt.Fprintln(tw, errorCell(r.err))
				continue
			}
			methods := r.v.Methods
			if methods == nil {
				methods = []string{} // published, none: an empty cell, not "-"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.v.Protocol, dash(r.v.Version), uptimeCell(r.v.Uptime),
				dash(methodsCell(methods, maxMethodsCell)), metadataCell(r.v.Metadata))
		}
	})
}

func (c *cli) printStats(rows []answer[zmqmsg.ServerStats]) error {
	if c.g.json {
		lines := make([]statsLine, 0, len(rows))
		for _, r := range rows {
			l := statsLine{Exchange: c.g.exchange, Topic: r.topic, Server: r.server, Node: r.node}
			l.Error, l.ErrorType = errorFields(r.err)
			if r.err == nil {
				l.ServerStats = &r.v
			}
			lines = append(lines, l)
		}
		return c.printValue(lines)
	}
	return c.table("TOPIC\tSERVER\tMETHOD\tREQUESTS\tERRORS\tIN_FLIGHT\tAVG_MS\tTOTAL_S\tLAST_ERROR\tLAST_ERROR_AT", func(tw *tabwriter.Writer) {
		for _, r := range answeredFirst(rows) {
			if r.err != nil {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.topic, r.server, errorCell(r.err))
				continue
			}
			for _, m := range r.v.Methods {
				at := "-"
				if !m.LastErrorAt.IsZero() {
					at = m.LastErrorAt.Local().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%.3f\t%.3f\t%s\t%s\n", r.topic, r.server, m.Method,
					m.Requests, m.Errors, m.InFlight, ms(m.AverageTime), m.ProcessingTime.Seconds(),
					dash(cut(m.LastError, maxLastErrorCell)), at)
			}
			if r.v.NoSuchMethod > 0 || len(r.v.Methods) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t-\t-\t-\t-\t-\t-\n", r.topic, r.server, noSuchMethodRow, r.v.NoSuchMethod)
			}
		}
	})
}

// answeredFirst returns the rows of the servers that answered, then those
// of the servers that did not, each in rows' order: a table's error lines,
// whose text takes the place of several columns, come after the lines
// whose columns they would split (tabwriter aligns a column over the run
// of lines that have it).
func answeredFirst[T any](rows []answer[T]) []answer[T] {
	out := make([]answer[T], 0, len(rows))
	for _, r := range rows {
		if r.err == nil {
			out = append(out, r)
		}
	}
	for _, r := range rows {
		if r.err != nil {
			out = append(out, r)
		}
	}
	return out
}

// noSuchMethodRow is the METHOD of the stats line that counts the requests
// for a method the server does not offer.
const noSuchMethodRow = "(no such method)"

// table prints a table with its header line and the rows that fill writes.
func (c *cli) table(header string, fill func(tw *tabwriter.Writer)) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	fill(tw)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	return nil
}

// Bounds of the cells of the info and stats tables, in characters.
const (
	maxMetadataCell  = 48
	maxLastErrorCell = 60
)

// metadataCell is the METADATA of the info table: key=value, sorted by
// key, cut like METHODS; "-" when there is none.
func metadataCell(meta map[string]string) string {
	if len(meta) == 0 {
		return "-"
	}
	kv := make([]string, 0, len(meta))
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		kv = append(kv, oneLine(k+"="+meta[k]))
	}
	return methodsCell(kv, maxMetadataCell)
}

// uptimeCell is an uptime to the second ("3h2m1s"; "0s" in the first).
func uptimeCell(d time.Duration) string { return d.Round(time.Second).String() }

// errorCell is a server's error in a table, in place of its answer.
func errorCell(err error) string { return "error: " + oneLine(err.Error()) }

// oneLine makes s fit a table's cell: tabs and line breaks become spaces.
func oneLine(s string) string {
	return strings.NewReplacer("\t", " ", "\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// cut returns s on one line, shortened to at most width characters (the
// last one "…" when it was cut).
func cut(s string, width int) string {
	s = oneLine(s)
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}
