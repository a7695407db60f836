package main

import (
	"context"
	"fmt"

	"github.com/zmqmsg/zmqmsg"
)

var cmdKeygen = &command{
	name:    "keygen",
	args:    "FILE",
	summary: "make a CURVE key pair: the secret key into FILE, the public key on stdout",
	doc: `Creates a new CURVE key pair, writes the secret key to FILE (mode 0600; an
existing file is never overwritten) and prints the public key, which is safe
to share: list it in the --curve-allow file of the nodes this one calls.
Use FILE with --curve-key here and in zmqmsg-proxy. With --json, prints
{"public_key": "...", "file": "..."}.`,
	minArgs: 1, maxArgs: 1,
	run: runKeygen,
}

func runKeygen(_ context.Context, c *cli, pos []string) error {
	pub, err := zmqmsg.WriteKeyFile(pos[0])
	if err != nil {
		return err
	}
	if c.g.json {
		return c.printValue(map[string]string{"public_key": pub, "file": pos[0]})
	}
	_, err = fmt.Fprintln(c.stdout, pub)
	return err
}
