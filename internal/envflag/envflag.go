// Package envflag lets every flag of a flag.FlagSet be set by an environment
// variable too: flag "ipc-dir" of a command with prefix "ZMQMSG" is read
// from ZMQMSG_IPC_DIR. A flag given on the command line beats the variable.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Name returns the environment variable of flag name: prefix, "_", and the
// name upper-cased with '-' and '.' turned into '_'.
func Name(prefix, name string) string {
	return prefix + "_" + strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(name))
}

// Apply sets every flag of fs that was not set on the command line (call it
// after fs.Parse) from its environment variable, if lookup finds one. A bad
// value is an error naming the variable.
func Apply(fs *flag.FlagSet, prefix string, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		env := Name(prefix, f.Name)
		if v, ok := lookup(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("invalid value %q for %s: %w", v, env, e)
			}
		}
	})
	return err
}

// Usage returns a usage function for fs that prints header, then every
// flag with its default and its environment variable.
func Usage(fs *flag.FlagSet, prefix, header string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprint(w, header)
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  --%s", f.Name)
			if name != "" {
				fmt.Fprintf(w, " %s", name)
			}
			fmt.Fprintf(w, "\n    \t%s", strings.ReplaceAll(usage, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, "\n    \tenv %s\n", Name(prefix, f.Name))
		})
	}
}

// Duration is a time.Duration flag that, unlike flag.Duration, says what is
// wrong with a bad value: a number without a unit ("5") gets "use a unit:
// 5s".
type Duration time.Duration

// DurationVar defines a Duration flag, like flag.DurationVar.
func DurationVar(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var((*Duration)(p), name, usage)
}

// Set parses s.
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return fmt.Errorf("use a unit: %ss", s)
		}
		return errors.New("want a duration with a unit, such as 500ms, 10s or 2m")
	}
	*d = Duration(v)
	return nil
}

func (d *Duration) String() string { return time.Duration(*d).String() }

// Get returns the time.Duration.
func (d *Duration) Get() any { return time.Duration(*d) }
