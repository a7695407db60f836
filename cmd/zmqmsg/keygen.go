package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/zmqmsg/zmqmsg"
)

var cmdKeygen = &command{
	name:    "keygen",
	args:    "FILE",
	summary: "make a CURVE key pair (secret key into FILE), or print FILE's public key (--public)",
	doc: `Creates a new CURVE key pair, writes the secret key to FILE (mode 0600; an
existing file is never overwritten) and prints the public key, which is safe
to share: list it in the --curve-allow file of the nodes this one calls.
Use FILE with --curve-key here and in zmqmsg-proxy.

With --public, creates nothing: prints the public key of the existing key
file FILE, alone on one line, so that it can be appended to an allow file
without a shell quoting it (keys may contain $, & and <):

  zmqmsg keygen --public caller.key >> allowed

With --json, prints {"public_key": "...", "file": "..."}.`,
	minArgs: 1, maxArgs: 1,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.BoolVar(&o.public, "public", false, "print the public key of the existing key FILE instead of making a new one")
	},
	run: runKeygen,
}

func runKeygen(_ context.Context, c *cli, pos []string) error {
	var pub string
	if c.o.public {
		sec, err := zmqmsg.LoadSecurity(pos[0], "")
		if err != nil {
			return err
		}
		pub = sec.PublicKey
	} else {
		var err error
		if pub, err = zmqmsg.WriteKeyFile(pos[0]); err != nil {
			return err
		}
	}
	if c.g.json {
		return c.printValue(map[string]string{"public_key": pub, "file": pos[0]})
	}
	_, err := fmt.Fprintln(c.stdout, pub)
	return err
}
