package directory_test

import (
	"context"
	"fmt"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
)

func Example() {
	d := directory.NewMemory()
	defer d.Close()
	ctx := context.Background()

	// Two servers of the "compute" topic announce themselves. A real server
	// registers again well before the TTL runs out, to stay listed.
	key := directory.Key{Exchange: "nova", Topic: "compute"}
	for _, r := range []directory.Registration{
		{Key: key, Server: "host-b", Node: directory.Node{Host: "10.0.0.2", CallPort: 9501}},
		{Key: key, Server: "host-a", Node: directory.Node{Host: "10.0.0.1", CallPort: 9501, CastPort: 9504}},
	} {
		if err := d.Register(ctx, r, 30*time.Second); err != nil {
			fmt.Println(err)
			return
		}
	}

	// A client finds them, sorted by node.
	entries, err := d.Lookup(ctx, key)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(key)
	for _, e := range entries {
		fmt.Println(e.Server, e.Node.CallEndpoint())
	}
	// Output:
	// nova/compute
	// host-a tcp://10.0.0.1:9501
	// host-b tcp://10.0.0.2:9501
}

// Open picks the directory from a URL, as the CLI and the proxy daemon do:
// "memory:" is the in-process Shared directory, a redis:// URL (or
// redis+sentinel://, redis+cluster://, a host:port list) a Redis directory.
func ExampleOpen() {
	ctx := context.Background()
	d, err := directory.Open(ctx, "memory:")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close() // a no-op for the Shared directory

	r := directory.Registration{
		Key:    directory.Key{Topic: "ExampleOpen"},
		Server: "host-a",
		Node:   directory.Node{Host: "10.0.0.1", CallPort: 9501},
	}
	if err := d.Register(ctx, r, time.Minute); err != nil {
		fmt.Println(err)
		return
	}
	defer d.Deregister(ctx, r)
	entries, _ := d.Lookup(ctx, r.Key)
	fmt.Println(entries[0].Server, entries[0].Node.CallEndpoint())

	_, err = directory.Open(ctx, "redis://:secret@localhost:0")
	fmt.Println(err)
	// Output:
	// host-a tcp://10.0.0.1:9501
	// directory: bad directory URL "redis://:xxxxx@localhost:0": port "0" not in 1..65535
}

// A Redis directory shared by every node; Sentinel and Cluster only
// change the URL. Not run: it needs a Redis server.
func ExampleNewRedis() {
	opts, err := directory.ParseURL("redis+sentinel://:secret@10.0.0.5:26379,10.0.0.6:26379/mymaster?prefix=prod")
	if err != nil {
		fmt.Println(err)
		return
	}
	opts.OpTimeout = 500 * time.Millisecond
	d, err := directory.NewRedis(opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()

	ctx := context.Background()
	key := directory.Key{Exchange: "nova", Topic: "compute"}
	changed, stop := d.Watch(key)
	defer stop()
	for range changed {
		entries, err := d.Lookup(ctx, key) // from the cache unless it may be stale
		if err != nil {
			fmt.Println(err) // errors.Is(err, directory.ErrUnavailable): nothing cached yet
			continue
		}
		fmt.Println(len(entries), "servers;", d.Stats().CacheHits, "cache hits")
	}
}
