package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/zmqmsg/zmqmsg/internal/envflag"
)

// usage returns the --help of fs: usageHeader, then every flag with its
// type, default and environment variable (envflag.Usage, which would call
// a duration a "value").
func usage(fs *flag.FlagSet) func() {
	return func() {
		w := fs.Output()
		fmt.Fprint(w, usageHeader)
		fs.VisitAll(func(f *flag.Flag) {
			name, text := flag.UnquoteUsage(f)
			if _, ok := f.Value.(*envflag.Duration); ok && name == "value" {
				name = "duration"
			}
			fmt.Fprintf(w, "  --%s", f.Name)
			if name != "" {
				fmt.Fprintf(w, " %s", name)
			}
			fmt.Fprintf(w, "\n    \t%s", strings.ReplaceAll(text, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, "\n    \tenv %s\n", envflag.Name("ZMQMSG", f.Name))
		})
	}
}
