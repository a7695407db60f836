package main

// Direction says how a row's checked value compares with its target.
type Direction int

// The directions a row can have.
const (
	Info    Direction = iota // reported only, no target
	AtLeast                  // met when the value is ≥ the target
	AtMost                   // met when the value is ≤ the target
)

// Row is one line of a table: a metric of a zmqmsg benchmark, divided by a
// metric of its peer benchmark (the ratio is then what meets the target or
// not), or, with no Peer, the metric itself checked against the target.
type Row struct {
	Table      string // "throughput" or "scale"
	What       string
	Bench      string // full benchmark name, sub-benchmarks included
	Metric     string // unit as printed: "calls/s", "p50-µs", "allocs/op", ...
	Peer       string // "" for a row that checks Bench's metric itself
	PeerMetric string
	Target     float64
	Dir        Direction
}

// Benchmark names the rows use.
const (
	callSeq     = "BenchmarkZmqmsg_Call_Sequential/strategy=netpoll"
	callJSONSeq = "BenchmarkZmqmsg_Call_JSON_Sequential/strategy=netpoll"
	callConc    = "BenchmarkZmqmsg_Call_Concurrent/strategy=netpoll/callers="
	callDaemon  = "BenchmarkZmqmsg_Call_Concurrent/strategy=netpoll-daemon/callers=64"
	natsReqConc = "BenchmarkNATS_RequestReply_Concurrent/callers="
	castAcked   = "BenchmarkZmqmsg_Cast_Acked/senders="
	castDirect  = "BenchmarkZmqmsg_Cast_Direct/senders="
	fanout      = "BenchmarkZmqmsg_Fanout/subs="
	pubSub      = "BenchmarkRawZMQ_PubSub/subs="
	serveTopics = "BenchmarkZmqmsg_ServeTopics/topics="
	natsTopics  = "BenchmarkNATS_ServeTopics/topics="
	idleNode    = "BenchmarkZmqmsg_IdleNode"
	natsIdle    = "BenchmarkNATS_IdleConn"
	callSize    = "BenchmarkZmqmsg_Call_Size/size="
	natsSize    = "BenchmarkNATS_RequestReply_Size/size="
)

// Rows are every row the tool knows, in print order. A row whose
// benchmarks do not exist (yet) prints as n/a.
var Rows = []Row{
	{"throughput", "CALL 64 callers ÷ NATS request/reply", callConc + "64", "calls/s", natsReqConc + "64", "calls/s", 1.5, AtLeast},
	{"throughput", "CALL 16 callers ÷ NATS request/reply", callConc + "16", "calls/s", natsReqConc + "16", "calls/s", 1.2, AtLeast},
	{"throughput", "sequential CALL p50 ÷ raw DEALER→ROUTER (2 contexts)", callSeq, "p50-µs", "BenchmarkRawZMQ_DealerRouterEcho_Sequential/contexts=2", "p50-µs", 1.3, AtMost},
	{"throughput", "sequential CALL p50 ÷ NATS request/reply p50", callSeq, "p50-µs", "BenchmarkNATS_RequestReply_Sequential", "p50-µs", 0, Info},
	{"throughput", "allocs per sequential CALL", callSeq, "allocs/op", "", "", 12, AtMost},
	{"throughput", "allocs per sequential CALL, JSON", callJSONSeq, "allocs/op", "", "", 20, AtMost},
	{"throughput", "acked CAST 64 senders ÷ NATS publish+ack", castAcked + "64", "casts/s", "BenchmarkNATS_PublishAck/senders=64", "msgs/s", 1.5, AtLeast},
	{"throughput", "direct CAST 1 sender ÷ raw PUSH/PULL", castDirect + "1", "msgs/s", "BenchmarkRawZMQ_PushPull", "msgs/s", 0.8, AtLeast},
	{"throughput", "direct CAST 16 senders ÷ raw PUSH/PULL 16", castDirect + "16", "msgs/s", "BenchmarkRawZMQ_PushPull_Senders/senders=16", "msgs/s", 0.8, AtLeast},
	{"throughput", "FANOUT 1 subscriber ÷ raw PUB/SUB", fanout + "1", "deliveries/s", pubSub + "1", "deliveries/s", 0.7, AtLeast},
	{"throughput", "FANOUT 8 subscribers ÷ raw PUB/SUB", fanout + "8", "deliveries/s", pubSub + "8", "deliveries/s", 0.7, AtLeast},
	{"throughput", "NOTIFY 2 pools ÷ acked CAST 16 senders", "BenchmarkZmqmsg_Notify/pools=2", "msgs/s", castAcked + "16", "casts/s", 0.9, AtLeast},
	{"throughput", "CALL 64 callers, daemon ÷ embedded", callDaemon, "calls/s", callConc + "64", "calls/s", 0.8, AtLeast},
	{"throughput", "CallAll to 8 servers p50 ÷ one CALL p50", "BenchmarkZmqmsg_CallAll/servers=8", "p50-µs", callSeq, "p50-µs", 0, Info},
	{"throughput", "one slow server of 3, 16 callers: p99 least-outstanding ÷ round robin", "BenchmarkZmqmsg_Call_SlowServer/pick=lor", "p99-µs", "BenchmarkZmqmsg_Call_SlowServer/pick=rr", "p99-µs", 0, Info},
	{"throughput", "sequential CALL 4 KiB, p50 ÷ NATS p50", callSize + "4KiB", "p50-µs", natsSize + "4KiB", "p50-µs", 0, Info},
	{"throughput", "sequential CALL 64 KiB, p50 ÷ NATS p50", callSize + "64KiB", "p50-µs", natsSize + "64KiB", "p50-µs", 1.2, AtMost},
	{"throughput", "sequential CALL 1 MiB, p50 ÷ NATS p50", callSize + "1MiB", "p50-µs", natsSize + "1MiB", "p50-µs", 1.2, AtMost},
	{"throughput", "sequential CALL 64 KiB, p99 ÷ NATS p99", callSize + "64KiB", "p99-µs", natsSize + "64KiB", "p99-µs", 1.2, AtMost},
	{"throughput", "sequential CALL 4 KiB, p99 ÷ p50", callSize + "4KiB", "p99-µs", callSize + "4KiB", "p50-µs", 2, AtMost},
	{"throughput", "sequential CALL 64 KiB, p99 ÷ p50", callSize + "64KiB", "p99-µs", callSize + "64KiB", "p50-µs", 2, AtMost},
	{"throughput", "NATS 4 KiB, p99 ÷ p50", natsSize + "4KiB", "p99-µs", natsSize + "4KiB", "p50-µs", 0, Info},
	{"throughput", "NATS 64 KiB, p99 ÷ p50", natsSize + "64KiB", "p99-µs", natsSize + "64KiB", "p50-µs", 0, Info},

	{"scale", "idle Transport heap+stacks, KiB per node", idleNode, "heap-KiB/node", "", "", 512, AtMost},
	{"scale", "idle Transport RSS, KiB per node", idleNode, "rss-KiB/node", "", "", 1024, AtMost},
	{"scale", "idle Transport goroutines per node", idleNode, "goroutines/node", "", "", 12, AtMost},
	{"scale", "idle Transport heap ÷ NATS conn", idleNode, "heap-KiB/node", natsIdle, "heap-KiB/node", 0, Info},
	{"scale", "idle Server goroutines", serveTopics + "1", "goroutines/server", "", "", 2, AtMost},
	{"scale", "idle Server heap+stacks, KiB", serveTopics + "1", "heap-KiB/server", "", "", 32, AtMost},
	{"scale", "1,000 topics: goroutines per server (≤ 3,000 in all)", serveTopics + "1000", "goroutines/server", "", "", 3, AtMost},
	{"scale", "1,000 topics: KiB per server (≤ 32 MiB in all)", serveTopics + "1000", "heap-KiB/server", "", "", 32.768, AtMost},
	{"scale", "1,000 topics: heap per server ÷ NATS", serveTopics + "1000", "heap-KiB/server", natsTopics + "1000", "heap-KiB/server", 0, Info},
	{"scale", "Serve time, last 10% of 1,000 (µs)", serveTopics + "1000", "serve-last-µs", "", "", 50, AtMost},
	{"scale", "Serve time, last 10% ÷ first 10% of 1,000", serveTopics + "1000", "serve-last-µs", serveTopics + "1000", "serve-first-µs", 1.2, AtMost},
	{"scale", "node start, New + first Serve (ns)", "BenchmarkZmqmsg_NodeStart", "ns/op", "", "", 2e6, AtMost},
}
