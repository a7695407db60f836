package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// runTimeout is the test binary's own -test.timeout for one benchmark run:
// a hung benchmark panics and is reported as failed instead of blocking.
const runTimeout = "10m"

// errNoSuchBenchmark: the binary ran the pattern, passed, and printed no
// result for it (a sub-benchmark that does not exist).
var errNoSuchBenchmark = errors.New("no such benchmark")

// buildBinary compiles the bench package in dir into a test binary in tmp.
func buildBinary(ctx context.Context, dir, tmp string) (string, error) {
	bin := filepath.Join(tmp, "bench.test")
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go test -c in %s: %w", dir, err)
	}
	return bin, nil
}

// listBenchmarks returns the top-level benchmarks a test binary holds.
func listBenchmarks(ctx context.Context, bin string) (map[string]bool, error) {
	out, err := exec.CommandContext(ctx, bin, "-test.list", "^Benchmark").Output()
	if err != nil {
		return nil, fmt.Errorf("%s -test.list: %w", bin, err)
	}
	names := map[string]bool{}
	for _, line := range strings.Fields(string(out)) {
		names[line] = true
	}
	return names, nil
}

// topLevel is the benchmark function of a full benchmark name.
func topLevel(name string) string {
	top, _, _ := strings.Cut(name, "/")
	return top
}

// benchPattern is the -test.bench pattern that selects exactly name: one
// anchored regexp per level ("strategy=netpoll/callers=64" is two levels).
func benchPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// runBench runs one benchmark of bin in dir and returns its metrics.
func runBench(ctx context.Context, bin, dir, name, benchtime string) (map[string]float64, error) {
	cmd := exec.CommandContext(ctx, bin, "-test.run=^$", "-test.bench="+benchPattern(name),
		"-test.benchtime="+benchtime, "-test.benchmem", "-test.timeout="+runTimeout)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w: %s", err, failExcerpt(stdout.String()+stderr.String()))
	}
	if m, ok := findResult(stdout.String(), name); ok {
		return m, nil
	}
	return nil, errNoSuchBenchmark
}

// findResult returns the metrics of name's result line in out.
func findResult(out, name string) (map[string]float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		got, m, ok := parseLine(sc.Text())
		if ok && sameBench(got, name) {
			return m, true
		}
	}
	return nil, false
}

// sameBench reports whether got, as printed, is want with or without the
// -GOMAXPROCS suffix the testing package adds.
func sameBench(got, want string) bool {
	if got == want {
		return true
	}
	rest, ok := strings.CutPrefix(got, want+"-")
	if !ok || rest == "" {
		return false
	}
	_, err := strconv.Atoi(rest)
	return err == nil
}

// parseLine parses a standard benchmark result line,
//
//	BenchmarkX/sub-2   1000   1234 ns/op   56.7 p50-µs   64 B/op   2 allocs/op
//
// into the name as printed and its metrics by unit ("iterations" holds the
// count). ok is false for any other line.
func parseLine(line string) (name string, metrics map[string]float64, ok bool) {
	i := strings.Index(line, "Benchmark")
	if i < 0 {
		return "", nil, false
	}
	f := strings.Fields(line[i:])
	if len(f) < 4 || len(f)%2 != 0 {
		return "", nil, false
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return "", nil, false
	}
	metrics = map[string]float64{"iterations": float64(n)}
	for j := 2; j < len(f); j += 2 {
		v, err := strconv.ParseFloat(f[j], 64)
		if err != nil {
			return "", nil, false
		}
		metrics[f[j+1]] = v
	}
	if _, ok := metrics["ns/op"]; !ok {
		return "", nil, false
	}
	return f[0], metrics, true
}

// failExcerpt keeps the lines of a failed run that say why: "--- FAIL"
// blocks, panics and FAIL lines, else the last lines; at most 12.
func failExcerpt(out string) string {
	var keep []string
	inFail := false
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "--- FAIL"), strings.HasPrefix(l, "panic:"):
			inFail = true
			keep = append(keep, l)
		case inFail && strings.HasPrefix(l, " "):
			keep = append(keep, l)
		default:
			inFail = false
		}
	}
	if len(keep) == 0 {
		keep = lines[max(len(lines)-5, 0):]
	}
	if len(keep) > 12 {
		keep = append(keep[:12], "...")
	}
	return strings.Join(keep, "\n")
}
