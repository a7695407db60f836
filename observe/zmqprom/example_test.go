package zmqprom_test

import (
	"fmt"
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/observe/zmqprom"
)

// A Transport's counters and per-method records, and latency histograms of
// its calls and handlers, on a /metrics endpoint.
func Example() {
	dir := directory.NewMemory()
	defer dir.Close()
	m := zmqprom.NewMetrics()
	t, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}},
		zmqmsg.WithClientInterceptors(m.ClientInterceptor()),
		zmqmsg.WithServerInterceptors(m.ServerInterceptor()))
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(zmqprom.NewCollector(t), m)
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// go http.ListenAndServe("127.0.0.1:9090", nil)

	fams, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(fams) > 0)
	// Output: true
}
