package zmqotel_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/observe/zmqotel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Both ends traced: the server's span continues the caller's trace, its
// context carried in the call's metadata.
func Example() {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	dir := directory.NewMemory()
	defer dir.Close()
	t, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}},
		zmqmsg.WithClientInterceptors(zmqotel.ClientInterceptor(zmqotel.WithTracerProvider(tp))),
		zmqmsg.WithServerInterceptors(zmqotel.ServerInterceptor(zmqotel.WithTracerProvider(tp))))
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
	srv, err := t.Serve(zmqmsg.Target{Topic: "greeter"}, zmqmsg.Endpoints{
		"hello": zmqmsg.Method(func(_ context.Context, name string) (string, error) { return "hello " + name, nil }),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out string
	if err := t.Client(zmqmsg.Target{Topic: "greeter"}).Call(ctx, "hello", "ada", &out); err != nil {
		log.Fatal(err)
	}
	spans := rec.Ended()
	fmt.Println(out)
	for _, s := range spans {
		fmt.Println(s.SpanKind(), s.Name())
	}
	fmt.Println("one trace:", spans[0].SpanContext().TraceID() == spans[1].SpanContext().TraceID())
	// Output:
	// hello ada
	// server greeter/hello
	// client greeter/hello
	// one trace: true
}
