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
