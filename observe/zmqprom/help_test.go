package zmqprom

import (
	"reflect"
	"testing"

	"github.com/zmqmsg/zmqmsg"
)

// Every counter of zmqmsg.Stats has its own help text.
func TestEveryStatsFieldHasHelp(t *testing.T) {
	st := reflect.TypeFor[zmqmsg.Stats]()
	for i := range st.NumField() {
		if _, ok := statsHelp[st.Field(i).Name]; !ok {
			t.Errorf("Stats.%s: no help text in statsHelp", st.Field(i).Name)
		}
	}
	if len(statFields()) != st.NumField() {
		t.Errorf("%d metrics for %d fields", len(statFields()), st.NumField())
	}
	for name, want := range map[string]string{"CallRetries": "call_retries", "FanoutsSent": "fanouts_sent", "NodesDown": "nodes_down", "HandlerErrors": "handler_errors"} {
		if got := snake(name); got != want {
			t.Errorf("snake(%s) = %s, want %s", name, got, want)
		}
	}
}
