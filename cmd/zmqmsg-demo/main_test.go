package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/zmqmsg/zmqmsg"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The counter table shows only the counters that are not zero on both
// nodes, each column aligned: names to the left, values to the right.
func TestPrintStats(t *testing.T) {
	a := zmqmsg.Stats{Calls: 2000, NotificationsFiltered: 1, PendingCalls: 0}
	b := zmqmsg.Stats{Calls: 7, CastsRun: 123456}
	var out bytes.Buffer
	printStats(&out, a, b)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{
		"                         node A  node B",
		"  Calls                    2000       7",
		"  CastsRun                    0  123456",
		"  NotificationsFiltered       1       0",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("table:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}
}
