// Package interrupt turns SIGINT and SIGTERM into an orderly stop. After the
// first signal, Err reports it, and a command that checks Err at its safe
// points (between stages, batches, file writes) returns, undoing what it had
// started. What it had started is registered with Track: partial run
// directories and temp files. A second signal, or a command that reaches no
// safe point within Grace, stops the process at once, after running the same
// undos.
package interrupt

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Grace is how long the first signal waits for the command to reach a safe
// point and undo its own work before the process undoes it and exits.
var Grace = 1500 * time.Millisecond

// Error is what Err returns once a signal arrived. Detail says what became
// of the command's output ("nothing written to runs/demo/…").
type Error struct {
	Signal syscall.Signal
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "interrupted by " + Name(e.Signal)
	}
	return "interrupted by " + Name(e.Signal) + ": " + e.Detail
}

// Code is the exit status of a process stopped by the signal: 128 + its
// number, as shells report it (130 for SIGINT, 143 for SIGTERM).
func (e *Error) Code() int { return 128 + int(e.Signal) }

// Name is SIGINT, SIGTERM, or the signal's number.
func Name(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return fmt.Sprintf("signal %d", int(sig))
}

var (
	received atomic.Int32 // the first signal's number; 0 before any

	mu       sync.Mutex
	stopping bool // the process is undoing its work and exiting
	undos    = map[*Undo]struct{}{}
	seq      int // registration order, for undoing newest first
	hooks    = map[int]func(syscall.Signal){}
	hookSeq  int
	note     string // Detail of a forced stop

	exitMu sync.Mutex // held by whoever prints the last line and exits
)

// Err is nil until a signal arrived, then an *Error with no Detail.
func Err() error {
	if sig := received.Load(); sig != 0 {
		return &Error{Signal: syscall.Signal(sig)}
	}
	return nil
}

// As returns the interruption err carries, or nil.
func As(err error) *Error {
	var ie *Error
	if errors.As(err, &ie) {
		return ie
	}
	return nil
}

// SetNote sets what a forced stop says became of the output; the command
// that owns the output sets it when it knows the output's path.
func SetNote(s string) {
	mu.Lock()
	note = s
	mu.Unlock()
}

// Undo is the removal of something a command created and has not finished.
type Undo struct {
	once  sync.Once
	f     func()
	order int
}

// Track runs create, which makes something (a temp file, a partial
// directory) and returns how to remove it, and registers that removal for a
// stop. While the process is stopping it creates nothing and returns the
// interruption, so nothing appears after the undos ran.
func Track(create func() (undo func(), err error)) (*Undo, error) {
	mu.Lock()
	defer mu.Unlock()
	if stopping {
		return nil, Err()
	}
	f, err := create()
	if err != nil {
		return nil, err
	}
	seq++
	u := &Undo{f: f, order: seq}
	undos[u] = struct{}{}
	return u, nil
}

// Now removes what u tracks (once) and forgets it.
func (u *Undo) Now() {
	if u == nil {
		return
	}
	u.once.Do(u.f)
	mu.Lock()
	delete(undos, u)
	mu.Unlock()
}

// Keep forgets u without running it: what it tracked is finished (renamed
// into place) and stays.
func (u *Undo) Keep() {
	if u == nil {
		return
	}
	u.once.Do(func() {})
	mu.Lock()
	delete(undos, u)
	mu.Unlock()
}

// OnSignal runs f when the first signal arrives, before Err reports it and
// before anything is undone (a sweep records which task was interrupted).
// It returns f's removal.
func OnSignal(f func(syscall.Signal)) (remove func()) {
	mu.Lock()
	defer mu.Unlock()
	hookSeq++
	id := hookSeq
	hooks[id] = f
	return func() {
		mu.Lock()
		delete(hooks, id)
		mu.Unlock()
	}
}

// Catch handles SIGINT and SIGTERM for the rest of the process's life; a
// forced stop's line begins with prefix (the command: "cavforge run").
func Catch(prefix string) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		first := (<-sigs).(syscall.Signal)
		mu.Lock()
		var fs []func(syscall.Signal)
		for id := 1; id <= hookSeq; id++ {
			if f, ok := hooks[id]; ok {
				fs = append(fs, f)
			}
		}
		mu.Unlock()
		for _, f := range fs {
			f(first)
		}
		// Only now, so that the hooks can still write.
		received.Store(int32(first))
		select {
		case <-sigs:
		case <-time.After(Grace):
		}
		stop(first, prefix)
	}()
}

// stop undoes everything still tracked, newest first, and exits.
func stop(sig syscall.Signal, prefix string) {
	mu.Lock()
	stopping = true
	list := make([]*Undo, 0, len(undos))
	for u := range undos {
		list = append(list, u)
	}
	detail := note
	mu.Unlock()
	for len(list) > 0 {
		newest := 0
		for i, u := range list {
			if u.order > list[newest].order {
				newest = i
			}
		}
		list[newest].once.Do(list[newest].f)
		list = append(list[:newest], list[newest+1:]...)
	}
	e := &Error{Signal: sig, Detail: detail}
	Exit(prefix+": "+e.Error(), e.Code())
}

// Exit prints line on stderr and exits with code. Only one caller gets to:
// a forced stop and the command's own return never both print.
func Exit(line string, code int) {
	exitMu.Lock()
	if line != "" {
		fmt.Fprintln(os.Stderr, line)
	}
	os.Exit(code)
}
