package main

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// linePrinter prints the JSON lines of listen and reply, one writer at a
// time. It stops the command (stop) at its first write error, which it
// keeps, and once it has printed limit lines (0: no limit).
type linePrinter struct {
	w     io.Writer
	limit int64
	stop  context.CancelFunc

	mu      sync.Mutex
	printed int64
	err     error // the first write error
}

// print writes line and returns the error if writing it failed.
func (p *linePrinter) print(line []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.printLocked(line)
}

// printWhileRunning is print until the limit is reached or a write
// failed; then it drops line and returns nil.
func (p *linePrinter) printWhileRunning(line []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if (p.limit > 0 && p.printed >= p.limit) || p.err != nil {
		return nil
	}
	return p.printLocked(line)
}

func (p *linePrinter) printLocked(line []byte) error {
	if _, err := fmt.Fprintf(p.w, "%s\n", line); err != nil {
		err = fmt.Errorf("write stdout: %w", err)
		if p.err == nil {
			p.err = err
			p.stop()
		}
		return err
	}
	p.printed++
	if p.limit > 0 && p.printed == p.limit {
		p.stop()
	}
	return nil
}

// writeErr returns the first write error.
func (p *linePrinter) writeErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}
