package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<40 + 12345, 1<<63 - 1} {
		b := bucket(v)
		if b < prev || b >= histBuckets {
			t.Fatalf("bucket(%d) = %d after %d (of %d)", v, b, prev, histBuckets)
		}
		prev = b
		if up := upper(b); up < v || (v >= 128 && float64(up-v) > float64(v)/64) {
			t.Errorf("upper(bucket(%d)) = %d", v, up)
		}
	}
}

func TestHistogramPercentiles(t *testing.T) {
	var h, a, b histogram
	if h.percentile(50) != 0 {
		t.Fatal("empty histogram")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var all []time.Duration
	for i := range 10000 {
		d := time.Duration(rng.Int64N(int64(50 * time.Millisecond)))
		all = append(all, d)
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	h.merge(&a)
	h.merge(&b)
	slices.Sort(all)
	for _, p := range []float64{50, 90, 99, 100} {
		want := all[int(float64(len(all))*p/100+0.999999)-1]
		got := h.percentile(p)
		if got < want || float64(got-want) > float64(want)/64 {
			t.Errorf("p%v = %v, want %v (within 1/64)", p, got, want)
		}
	}
	if h.max != all[len(all)-1] || h.percentile(100) != h.max || h.n != 10000 {
		t.Errorf("max %v, p100 %v, n %d", h.max, h.percentile(100), h.n)
	}
}
