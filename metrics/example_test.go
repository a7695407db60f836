package metrics_test

import (
	"os"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/metrics"
)

// A node proxy daemon's counters in the Prometheus text format (a Transport's
// with Servers.Transport); Handler serves them over HTTP.
func ExampleWriteText() {
	fams := metrics.OfProxy(zmqmsg.ProxyStats{Members: 2, Relayed: 42})
	for _, f := range fams {
		if f.Name == "zmqmsg_daemon_relayed_total" || f.Name == "zmqmsg_daemon_members" {
			_ = metrics.WriteText(os.Stdout, []metrics.Family{f})
		}
	}
	// Output:
	// # HELP zmqmsg_daemon_members service processes attached (call pipeline).
	// # TYPE zmqmsg_daemon_members gauge
	// zmqmsg_daemon_members 2
	// # HELP zmqmsg_daemon_relayed_total requests relayed to a service process.
	// # TYPE zmqmsg_daemon_relayed_total counter
	// zmqmsg_daemon_relayed_total 42
}
