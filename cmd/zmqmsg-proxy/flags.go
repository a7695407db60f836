package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/envflag"
)

// durationValue is a time.Duration flag that, unlike flag.Duration, says
// what is wrong with a bad value: a number without a unit ("5") gets "use
// a unit: 5s".
type durationValue time.Duration

// durationVar defines a duration flag, like flag.DurationVar.
func durationVar(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var((*durationValue)(p), name, usage)
}

func (d *durationValue) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return fmt.Errorf("use a unit: %ss", s)
		}
		return errors.New("want a duration with a unit, such as 500ms, 10s or 2m")
	}
	*d = durationValue(v)
	return nil
}

func (d *durationValue) String() string { return time.Duration(*d).String() }

// Get returns the time.Duration.
func (d *durationValue) Get() any { return time.Duration(*d) }

// usage returns the --help of fs: usageHeader, then every flag with its
// type, default and environment variable (envflag.Usage, which would call
// a duration a "value").
func usage(fs *flag.FlagSet) func() {
	return func() {
		w := fs.Output()
		fmt.Fprint(w, usageHeader)
		fs.VisitAll(func(f *flag.Flag) {
			name, text := flag.UnquoteUsage(f)
			if _, ok := f.Value.(*durationValue); ok && name == "value" {
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
