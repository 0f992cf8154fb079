// Package progress draws one-line progress bars for long stages on a
// terminal. Stages take a *Bar that may be nil: then nothing is drawn.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Bars makes bars on one writer (stderr when it is a terminal).
type Bars struct {
	W  io.Writer
	mu sync.Mutex
}

// Bar is one task's progress.
type Bar struct {
	bars  *Bars
	label string
	total int
	done  int
	start time.Time
	last  time.Time
}

// New starts a bar of total units; on a nil Bars it returns nil.
func (b *Bars) New(label string, total int) *Bar {
	if b == nil || b.W == nil {
		return nil
	}
	now := time.Now()
	return &Bar{bars: b, label: label, total: total, start: now}
}

// Add records n more units done and redraws at most ten times a second.
func (p *Bar) Add(n int) {
	if p == nil {
		return
	}
	p.done += n
	if now := time.Now(); now.Sub(p.last) > 100*time.Millisecond || p.done >= p.total {
		p.last = now
		p.draw()
	}
}

// Done finishes the line.
func (p *Bar) Done() {
	if p == nil {
		return
	}
	p.done = p.total
	p.draw()
	p.bars.mu.Lock()
	fmt.Fprintln(p.bars.W)
	p.bars.mu.Unlock()
}

func (p *Bar) draw() {
	const width = 30
	frac := 1.0
	if p.total > 0 {
		frac = min(1, float64(p.done)/float64(p.total))
	}
	fill := int(frac * width)
	eta := ""
	if elapsed := time.Since(p.start); p.done > 0 && p.done < p.total {
		left := time.Duration(float64(elapsed) * float64(p.total-p.done) / float64(p.done))
		eta = " eta " + left.Round(time.Second).String()
	}
	p.bars.mu.Lock()
	fmt.Fprintf(p.bars.W, "\r%-40.40s [%s%s] %d/%d%s\x1b[K", p.label,
		strings.Repeat("=", fill), strings.Repeat(" ", width-fill), p.done, p.total, eta)
	p.bars.mu.Unlock()
}
