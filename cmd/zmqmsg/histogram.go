package main

import (
	"math/bits"
	"time"
)

// histogram records durations in fixed memory: exact below 128ns, then 64
// buckets per power of two (a relative error under 1.6%). It is not safe
// for concurrent use: each bench goroutine has its own, merged at the end.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration
}

const (
	histSubBits = 6                                      // 64 buckets per power of two
	histSub     = 1 << histSubBits                       // 64
	histBuckets = (64-histSubBits-1)*histSub + 2*histSub // covers every positive int64
)

// bucket returns the bucket of v ≥ 0.
func bucket(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1 // ≥ 1; v>>shift is in [64, 128)
	return shift*histSub + int(v>>shift)
}

// upper returns the largest value of bucket i.
func upper(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := i/histSub - 1
	m := uint64(i - shift*histSub)
	return (m+1)<<shift - 1
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucket(uint64(d))]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100), as the
// upper bound of its bucket (never above the maximum); 0 when empty.
func (h *histogram) percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(float64(h.n)*p/100 + 0.999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(upper(i)), h.max)
		}
	}
	return h.max
}
