package reply

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmqmsg/zmqmsg/actors/socket"
)

// SpawnSupervisor starts the reply-correlation supervisor for table under
// root. It is a socket.Parent whose children are the socket actors that
// receive replies (one DEALER per remote node), supervised with strategy, so
// that:
//
//   - a socket actor that fails is restarted while the table, which lives
//     here and not in the socket, keeps every pending call;
//   - stopping the supervisor first fails every pending call (ErrClosed),
//     then stops its children.
//
// Start children under it with socket.SpawnUnder.
func SpawnSupervisor(root *actor.RootContext, name string, table *Table, strategy actor.SupervisorStrategy) (*actor.PID, error) {
	return socket.SpawnParent(root, name, strategy, func() { table.Close(ErrClosed) })
}
