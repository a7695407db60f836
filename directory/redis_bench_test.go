package directory

import (
	"fmt"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

// benchRedis starts a server with 3 registrations under key.
func benchRedis(b *testing.B) (*redistest.Server, *Redis) {
	srv := redistest.Start(b)
	d := newRedis(b, srv.URL())
	for i := range 3 {
		if err := d.Register(b.Context(), reg(fmt.Sprintf("s%d", i), "10.0.0.1", 9501+i), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	return srv, d
}

// BenchmarkRedisLookupCached: Lookup answered from the client cache.
func BenchmarkRedisLookupCached(b *testing.B) {
	_, d := benchRedis(b)
	waitFor(b, 5*time.Second, "a trusted cache", func() bool {
		_, _ = d.Lookup(b.Context(), key)
		return d.Stats().CacheHits > 0
	})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if es, err := d.Lookup(b.Context(), key); err != nil || len(es) != 3 {
			b.Fatal(es, err)
		}
	}
	b.StopTimer()
	if st := d.Stats(); st.CacheHits < uint64(b.N) {
		b.Fatalf("not all from the cache: %+v", st)
	}
}

// BenchmarkRedisLookupUncached: Lookup reading Redis (the lookup script)
// every time; the cache is invalidated before each call.
func BenchmarkRedisLookupUncached(b *testing.B) {
	_, d := benchRedis(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		d.invalidate(key, 0)
		if es, err := d.Lookup(b.Context(), key); err != nil || len(es) != 3 {
			b.Fatal(es, err)
		}
	}
}

// BenchmarkRedisRegister: a plain refresh (register script + SADD).
func BenchmarkRedisRegister(b *testing.B) {
	_, d := benchRedis(b)
	r := reg("s0", "10.0.0.1", 9501)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := d.Register(b.Context(), r, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryLookup is the in-process baseline.
func BenchmarkMemoryLookup(b *testing.B) {
	m := NewMemory()
	defer m.Close()
	for i := range 3 {
		if err := m.Register(b.Context(), reg(fmt.Sprintf("s%d", i), "10.0.0.1", 9501+i), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if es, err := m.Lookup(b.Context(), key); err != nil || len(es) != 3 {
			b.Fatal(es, err)
		}
	}
}
