package socket_test

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stopActor stops pid and waits for it, as a cleanup.
func stopActor(t testing.TB, sys *actor.ActorSystem, pid *actor.PID) {
	t.Helper()
	t.Cleanup(func() {
		if err := sys.Root.PoisonFuture(pid).Wait(); err != nil {
			t.Errorf("stop %s: %v", pid.Id, err)
		}
	})
}
