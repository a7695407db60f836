package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// printTables writes one table per Row.Table. old, when not nil, holds the
// same rows evaluated on the -compare binary: before/after columns.
func printTables(w io.Writer, outs, old []Outcome) error {
	var tables []string
	for _, o := range outs {
		if !slices.Contains(tables, o.Table) {
			tables = append(tables, o.Table)
		}
	}
	for _, table := range tables {
		fmt.Fprintf(w, "\n%s\n", table)
		tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
		if old == nil {
			fmt.Fprintln(tw, "what\t zmqmsg\t peer\t ratio\t target\t met")
		} else {
			fmt.Fprintln(tw, "what\t zmqmsg before\t zmqmsg after\t peer before\t peer after\t ratio before\t ratio after\t target\t met")
		}
		for i, o := range outs {
			if o.Table != table {
				continue
			}
			cells := []string{o.What, valueCell(o), peerCell(o), ratioCell(o), targetCell(o.Row), metCell(o)}
			if old != nil {
				b := old[i]
				cells = []string{o.What, valueCell(b), valueCell(o), peerCell(b), peerCell(o), ratioCell(b), ratioCell(o), targetCell(o.Row), metCell(o)}
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t "))
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("print table %s: %w", table, err)
		}
	}
	return nil
}

// printFailures lists every failed run of every binary.
func printFailures(w io.Writer, bins []*binary) {
	for _, b := range bins {
		for _, name := range slices.Sorted(maps.Keys(b.res.Failures)) {
			for _, f := range b.res.Failures[name] {
				fmt.Fprintf(w, "\nFAIL %s (%s) %s\n", name, b.label, indent(f))
			}
		}
	}
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }

func formatValue(v float64, unit string) string {
	prec := 0
	switch a := max(v, -v); {
	case a == float64(int64(a)), a >= 100:
	case a < 10:
		prec = 2
	default:
		prec = 1
	}
	return strconv.FormatFloat(v, 'f', prec, 64) + " " + unit
}

func valueCell(o Outcome) string {
	if o.Value == nil {
		return "n/a (" + o.Why + ")"
	}
	return formatValue(*o.Value, o.Metric)
}

func peerCell(o Outcome) string {
	switch {
	case o.Peer == "":
		return "-"
	case o.PeerValue == nil:
		return "n/a (" + o.PeerWhy + ")"
	}
	return formatValue(*o.PeerValue, o.PeerMetric)
}

func ratioCell(o Outcome) string {
	switch {
	case o.Peer == "":
		return "-"
	case o.RatioWhy != "":
		return "n/a (" + o.RatioWhy + ")"
	case o.Ratio == nil:
		return "n/a"
	}
	return strconv.FormatFloat(*o.Ratio, 'f', 2, 64)
}

func targetCell(r Row) string {
	switch r.Dir {
	case AtLeast:
		return "≥ " + strconv.FormatFloat(r.Target, 'g', -1, 64)
	case AtMost:
		return "≤ " + strconv.FormatFloat(r.Target, 'g', -1, 64)
	}
	return "-"
}

func metCell(o Outcome) string {
	switch {
	case o.Dir == Info:
		return "-"
	case o.Met == nil:
		return "n/a"
	case *o.Met:
		return "yes"
	}
	return "no"
}

// jsonRow is one row of the -json output.
type jsonRow struct {
	Table      string   `json:"table"`
	What       string   `json:"what"`
	Zmqmsg     *float64 `json:"zmqmsg"`
	Peer       *float64 `json:"peer"`
	Ratio      *float64 `json:"ratio"`
	Target     string   `json:"target"`
	Met        *bool    `json:"met"`
	Bench      string   `json:"bench"`
	Metric     string   `json:"metric"`
	PeerBench  string   `json:"peer_bench,omitempty"`
	PeerMetric string   `json:"peer_metric,omitempty"`
	Note       string   `json:"note,omitempty"`
}

// jsonReport is the -json output: the rows, every raw measurement, and the
// same for the -compare binary.
type jsonReport struct {
	Rounds    int                              `json:"rounds"`
	Benchtime string                           `json:"benchtime"`
	Bin       string                           `json:"bin"`
	Rows      []jsonRow                        `json:"rows"`
	Raw       map[string]map[string][]*float64 `json:"raw"`
	Missing   map[string]string                `json:"missing,omitempty"`
	Failures  map[string][]string              `json:"failures,omitempty"`
	Compare   *jsonReport                      `json:"compare,omitempty"`
}

func newJSONReport(opts options, bin *binary, outs []Outcome) *jsonReport {
	r := &jsonReport{Rounds: opts.rounds, Benchtime: opts.benchtime, Bin: bin.source,
		Raw: bin.res.Raw, Missing: bin.res.Missing, Failures: bin.res.Failures}
	for _, o := range outs {
		r.Rows = append(r.Rows, jsonRow{Table: o.Table, What: o.What, Zmqmsg: o.Value, Peer: o.PeerValue,
			Ratio: o.Ratio, Target: targetCell(o.Row), Met: o.Met, Bench: o.Bench, Metric: o.Metric,
			PeerBench: o.Peer, PeerMetric: o.PeerMetric, Note: o.Note()})
	}
	return r
}

func writeJSON(w io.Writer, r *jsonReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}
