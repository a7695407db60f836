package envelope

import (
	"slices"
	"testing"
)

func TestLogAttrs(t *testing.T) {
	id := NewID()
	for _, c := range []struct {
		tp   string
		want []any
	}{
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", []any{"id", id.String(), "trace_id", "0af7651916cd43dd8448eb211c80319c"}},
		{"", []any{"id", id.String()}},
		{"00-00000000000000000000000000000000-b7ad6b7169203331-01", []any{"id", id.String()}}, // invalid: all zero
		{"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", []any{"id", id.String()}}, // invalid: upper case
		{"garbage", []any{"id", id.String()}},
	} {
		m := Message{ID: id, Meta: map[string]string{MetaTraceParent: c.tp}}
		if got := LogAttrs(&m); !slices.Equal(got, c.want) {
			t.Errorf("traceparent %q: %v, want %v", c.tp, got, c.want)
		}
	}
}
