// Package obstest has what the observe module's tests share.
package obstest

import (
	"testing"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

// Node starts a Transport on dir with a free call port and opts, closed at
// cleanup.
func Node(t testing.TB, dir directory.Directory, opts ...zmqmsg.Option) *zmqmsg.Transport {
	t.Helper()
	tr, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	})
	return tr
}
