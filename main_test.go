package zmqmsg

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/zmqmsg/zmqmsg/directory"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial through a process-wide logger; the
	// Redis outage tests cause many.
	directory.SetRedisLogger(nil)
	goleak.VerifyTestMain(m)
}
