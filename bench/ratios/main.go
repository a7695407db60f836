// Command ratios runs the zmqmsg benchmarks and their peers (raw libzmq,
// NATS, or another zmqmsg benchmark) interleaved, and prints each ratio
// the project tracks next to its target.
//
// Run it from the bench module:
//
//	cd bench && go run ./ratios [-rounds 3] [-benchtime 2s] [-run REGEX] [-json]
//	                            [-bin PATH] [-compare OLDBIN]
//
// It builds the bench test binary once (or uses -bin), then for each round
// runs every selected benchmark once (one process each, with -benchmem),
// and takes the median of every metric over the rounds. With -compare, the
// same benchmarks of OLDBIN run right after (or, every other round, right
// before) the new ones, and the tables show before/after columns.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

const benchModule = "module github.com/zmqmsg/zmqmsg/bench"

// options are the command's flags.
type options struct {
	rounds    int
	benchtime string
	json      bool
	bin       string
	compare   string
	run       *regexp.Regexp
}

// binary is one test binary and what was measured with it.
type binary struct {
	label  string // "new" or "old"
	path   string
	source string          // what the report calls it
	listed map[string]bool // its top-level benchmarks
	res    *Results
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var opts options
	fs := flag.NewFlagSet("ratios", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&opts.rounds, "rounds", 3, "rounds; each runs every selected benchmark once")
	fs.StringVar(&opts.benchtime, "benchtime", "2s", "-test.benchtime of each run")
	fs.BoolVar(&opts.json, "json", false, "print one JSON object: rows and every raw measurement")
	fs.StringVar(&opts.bin, "bin", "", "use this prebuilt bench test binary instead of building one")
	fs.StringVar(&opts.compare, "compare", "", "also run the same benchmarks of this older test binary, interleaved")
	runRE := fs.String("run", "", "select rows whose what or benchmark names match this regexp")
	if err := fs.Parse(args); err != nil {
		return opts, fmt.Errorf("flags: %w", err)
	}
	if opts.rounds < 1 || fs.NArg() > 0 {
		return opts, errors.New("flags: -rounds must be ≥ 1 and no arguments are taken")
	}
	re, err := regexp.Compile(*runRE)
	if err != nil {
		return opts, fmt.Errorf("flags: -run: %w", err)
	}
	opts.run = re
	return opts, nil
}

// run is the command; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ratios:", err)
		return 2
	}
	rows := selectRows(Rows, opts.run)
	if len(rows) == 0 {
		fmt.Fprintln(stderr, "ratios: -run selects no row")
		return 2
	}
	tmp, err := os.MkdirTemp("", "ratios-")
	if err != nil {
		fmt.Fprintln(stderr, "ratios:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	bins, err := prepare(ctx, opts, tmp)
	if err == nil {
		err = measure(ctx, opts, bins, benchNames(rows), stderr)
	}
	if err == nil {
		err = report(stdout, opts, bins, rows)
	}
	if err != nil {
		fmt.Fprintln(stderr, "ratios:", err)
		return 1
	}
	return 0
}

// selectRows keeps the rows whose what, benchmark or peer matches re.
func selectRows(rows []Row, re *regexp.Regexp) []Row {
	var out []Row
	for _, r := range rows {
		if re.MatchString(r.What) || re.MatchString(r.Bench) || (r.Peer != "" && re.MatchString(r.Peer)) {
			out = append(out, r)
		}
	}
	return out
}

// benchNames are the benchmarks rows need, each once, in row order: a
// zmqmsg benchmark next to its peer.
func benchNames(rows []Row) []string {
	var names []string
	for _, r := range rows {
		for _, n := range []string{r.Bench, r.Peer} {
			if n != "" && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

// prepare builds (or takes) the new binary and takes the -compare one, and
// lists the benchmarks each holds.
func prepare(ctx context.Context, opts options, tmp string) ([]*binary, error) {
	paths, sources := []string{opts.bin}, []string{opts.bin}
	if opts.bin == "" {
		if err := checkBenchDir(); err != nil {
			return nil, err
		}
		bin, err := buildBinary(ctx, ".", tmp)
		if err != nil {
			return nil, err
		}
		paths[0], sources[0] = bin, "working tree"
	}
	if opts.compare != "" {
		paths, sources = append(paths, opts.compare), append(sources, opts.compare)
	}
	var bins []*binary
	for i, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("binary %s: %w", p, err)
		}
		listed, err := listBenchmarks(ctx, abs)
		if err != nil {
			return nil, err
		}
		bins = append(bins, &binary{label: []string{"new", "old"}[i], path: abs, source: sources[i], listed: listed, res: newResults(opts.rounds)})
	}
	return bins, nil
}

// checkBenchDir fails unless the working directory is the bench module.
func checkBenchDir() error {
	const hint = "run from the bench module's directory (cd bench && go run ./ratios)"
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		return fmt.Errorf("%s: %w", hint, err)
	}
	if !strings.Contains(string(mod), benchModule+"\n") {
		return errors.New(hint + ": ./go.mod is not the bench module")
	}
	return nil
}

// measure runs the rounds: each runs every benchmark once on every binary.
func measure(ctx context.Context, opts options, bins []*binary, names []string, log io.Writer) error {
	for _, b := range bins {
		for _, n := range names {
			if !b.listed[topLevel(n)] {
				b.res.Missing[n] = "no benchmark " + topLevel(n)
			}
		}
	}
	for round := range opts.rounds {
		order := slices.Clone(bins)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, name := range names {
			for _, b := range order {
				if err := measureOne(ctx, opts, b, name, round, log); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// measureOne runs name once on b and records the result; only a cancelled
// ctx is an error.
func measureOne(ctx context.Context, opts options, b *binary, name string, round int, log io.Writer) error {
	if _, missing := b.res.Missing[name]; missing {
		return nil
	}
	fmt.Fprintf(log, "round %d/%d %s (%s) ... ", round+1, opts.rounds, name, b.label)
	start := time.Now()
	m, err := runBench(ctx, b.path, ".", name, opts.benchtime)
	took := time.Since(start).Round(100 * time.Millisecond)
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(log, "interrupted")
		return fmt.Errorf("interrupted: %w", ctx.Err())
	case errors.Is(err, errNoSuchBenchmark):
		fmt.Fprintf(log, "no such benchmark (%s)\n", took)
		b.res.Missing[name] = "no benchmark " + name
	case err != nil:
		fmt.Fprintf(log, "FAIL (%s)\n", took)
		b.res.fail(name, round, err)
	default:
		fmt.Fprintf(log, "ok (%s)\n", took)
		b.res.record(name, round, m)
	}
	return nil
}

// report prints the tables (or the JSON object) and the failures.
func report(w io.Writer, opts options, bins []*binary, rows []Row) error {
	outs := evaluateAll(rows, bins[0].res)
	var old []Outcome
	if len(bins) > 1 {
		old = evaluateAll(rows, bins[1].res)
	}
	if opts.json {
		r := newJSONReport(opts, bins[0], outs)
		if old != nil {
			r.Compare = newJSONReport(opts, bins[1], old)
		}
		return writeJSON(w, r)
	}
	fmt.Fprintf(w, "medians of %d round(s), -benchtime %s, %s", opts.rounds, opts.benchtime, bins[0].source)
	if old != nil {
		fmt.Fprintf(w, " (after) vs %s (before)", bins[1].source)
	}
	fmt.Fprintln(w)
	if err := printTables(w, outs, old); err != nil {
		return err
	}
	printFailures(w, bins)
	return nil
}
