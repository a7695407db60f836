package envelope

import "strings"

// MetaTraceParent is the metadata key of a W3C trace context (the
// traceparent header), set by a tracing interceptor.
const MetaTraceParent = "traceparent"

// TraceID returns the trace id of m's traceparent metadata entry
// (version-traceid-spanid-flags, W3C Trace Context), "" without a valid one.
func (m *Message) TraceID() string { return traceID(m.Meta) }

// TraceAttrs is "trace_id" and the trace id of meta's traceparent, or
// nothing: for a log line about a message not built yet.
func TraceAttrs(meta map[string]string) []any {
	if t := traceID(meta); t != "" {
		return []any{"trace_id", t}
	}
	return nil
}

func traceID(meta map[string]string) string {
	tp := meta[MetaTraceParent]
	parts := strings.Split(tp, "-")
	if len(parts) < 4 || len(parts[1]) != 32 || strings.Trim(parts[1], "0123456789abcdef") != "" || strings.Trim(parts[1], "0") == "" {
		return ""
	}
	return parts[1]
}

// LogAttrs are the slog attributes that join a log line about m to the
// message and its trace: "id", and "trace_id" when m carries a trace
// context.
func LogAttrs(m *Message) []any {
	attrs := []any{"id", m.ID.String()}
	if t := m.TraceID(); t != "" {
		attrs = append(attrs, "trace_id", t)
	}
	return attrs
}
