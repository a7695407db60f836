// Command tracedserver is a service process for the observe module's
// tests: it joins the node proxy daemon of --proxy-dir, serves --topic with
// "echo", traced by zmqotel, and prints each ended span as a JSON line on
// stdout (stdouttrace). It prints "serving" on stderr once registered.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/observe/zmqotel"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func main() {
	dirURL := flag.String("directory", "", "directory URL")
	proxyDir := flag.String("proxy-dir", "", "the daemon's IPC directory")
	topic := flag.String("topic", "traced", "topic")
	flag.Parse()
	if err := run(*dirURL, *proxyDir, *topic); err != nil {
		fmt.Fprintln(os.Stderr, "tracedserver:", err)
		os.Exit(1)
	}
}

func run(dirURL, proxyDir, topic string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	exp, err := stdouttrace.New(stdouttrace.WithWriter(os.Stdout))
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	dir, err := directory.Open(ctx, dirURL)
	if err != nil {
		return err
	}
	defer dir.Close()
	t, err := zmqmsg.New(zmqmsg.Config{Directory: dir, ProxyDir: proxyDir},
		zmqmsg.WithServerInterceptors(zmqotel.ServerInterceptor(zmqotel.WithTracerProvider(tp))))
	if err != nil {
		return err
	}
	defer t.Close()
	s, err := t.Serve(zmqmsg.Target{Topic: topic}, zmqmsg.Endpoints{"echo": func(_ context.Context, a zmqmsg.Args) (any, error) { return a.Raw(), nil }})
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "serving")
	<-ctx.Done()
	return s.Stop(context.Background())
}
