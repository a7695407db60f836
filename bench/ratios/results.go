package main

import (
	"fmt"
	"slices"
	"strings"
)

// Results are the measurements of one test binary over the rounds.
type Results struct {
	rounds int
	// Raw: benchmark → metric → value per round (nil: none that round).
	Raw map[string]map[string][]*float64
	// Missing: benchmark → why it was not run or gave no result.
	Missing map[string]string
	// Failures: benchmark → one message per failed run.
	Failures map[string][]string
}

func newResults(rounds int) *Results {
	return &Results{
		rounds:   rounds,
		Raw:      map[string]map[string][]*float64{},
		Missing:  map[string]string{},
		Failures: map[string][]string{},
	}
}

// record stores the metrics of one run of name in round.
func (r *Results) record(name string, round int, metrics map[string]float64) {
	byMetric := r.Raw[name]
	if byMetric == nil {
		byMetric = map[string][]*float64{}
		r.Raw[name] = byMetric
	}
	for unit, v := range metrics {
		if byMetric[unit] == nil {
			byMetric[unit] = make([]*float64, r.rounds)
		}
		byMetric[unit][round] = &v
	}
}

// fail stores why one run of name in round failed.
func (r *Results) fail(name string, round int, err error) {
	r.Failures[name] = append(r.Failures[name], fmt.Sprintf("round %d: %v", round+1, err))
}

// value is the median of name's metric over the rounds, or why there is
// none.
func (r *Results) value(name, metric string) (float64, string) {
	if why, ok := r.Missing[name]; ok {
		return 0, why
	}
	byMetric := r.Raw[name]
	if byMetric == nil && len(r.Failures[name]) > 0 {
		return 0, name + " failed"
	}
	v, ok := median(byMetric[metric])
	if !ok {
		return 0, name + " reports no " + metric
	}
	return v, ""
}

// median of the non-nil values; false when there is none.
func median(vs []*float64) (float64, bool) {
	var xs []float64
	for _, v := range vs {
		if v != nil {
			xs = append(xs, *v)
		}
	}
	if len(xs) == 0 {
		return 0, false
	}
	slices.Sort(xs)
	mid := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[mid], true
	}
	return (xs[mid-1] + xs[mid]) / 2, true
}

// Outcome is a row evaluated on one binary's results.
type Outcome struct {
	Row
	Value, PeerValue, Ratio *float64
	Met                     *bool  // nil: n/a, or a row with no target
	Why, PeerWhy            string // why Value, PeerValue is n/a
	RatioWhy                string // why Ratio is n/a though both values exist
}

// Note says why the row is n/a, if it is.
func (o Outcome) Note() string {
	var why []string
	for _, w := range []string{o.Why, o.PeerWhy, o.RatioWhy} {
		if w != "" && !slices.Contains(why, w) {
			why = append(why, w)
		}
	}
	return strings.Join(why, "; ")
}

// evaluate computes a row's values, ratio and whether it meets its target.
func evaluate(row Row, res *Results) Outcome {
	o := Outcome{Row: row}
	if v, why := res.value(row.Bench, row.Metric); why == "" {
		o.Value = &v
	} else {
		o.Why = why
	}
	if row.Peer != "" {
		if p, why := res.value(row.Peer, row.PeerMetric); why == "" {
			o.PeerValue = &p
		} else {
			o.PeerWhy = why
		}
	}
	if o.Value == nil || (row.Peer != "" && o.PeerValue == nil) {
		return o
	}
	checked := *o.Value
	if row.Peer != "" {
		if *o.PeerValue == 0 {
			o.RatioWhy = "peer's " + row.PeerMetric + " is 0"
			return o
		}
		ratio := *o.Value / *o.PeerValue
		o.Ratio = &ratio
		checked = ratio
	}
	if row.Dir != Info {
		met := checked >= row.Target
		if row.Dir == AtMost {
			met = checked <= row.Target
		}
		o.Met = &met
	}
	return o
}

// evaluateAll evaluates rows on res.
func evaluateAll(rows []Row, res *Results) []Outcome {
	out := make([]Outcome, len(rows))
	for i, row := range rows {
		out[i] = evaluate(row, res)
	}
	return out
}
