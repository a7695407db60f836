package zmqmsg

import (
	"context"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	tr, err := New(Config{Ports: Ports{Call: AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	srv, err := tr.Serve(Target{Topic: "calc"}, Endpoints{"add": Method(func(ctx context.Context, a [2]int) (int, error) { return a[0] + a[1], nil })})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var sum int
	start := time.Now()
	for i := 0; i < 1000; i++ {
		if err := tr.Client(Target{Topic: "calc"}).Call(ctx, "add", [2]int{i, 2}, &sum); err != nil {
			t.Fatal(err)
		}
		if sum != i+2 {
			t.Fatal(sum)
		}
	}
	t.Logf("1000 calls in %v; stats %+v", time.Since(start), tr.Stats())
}
