package interrupt

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
)

// An undo runs once, by Now or by a stop, and never after Keep.
func TestUndoRunsOnceAndNeverAfterKeep(t *testing.T) {
	runs := map[string]int{}
	track := func(name string) *Undo {
		u, err := Track(func() (func(), error) { return func() { runs[name]++ }, nil })
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	a, b := track("a"), track("b")
	a.Now()
	a.Now()
	b.Keep()
	b.Now()
	if runs["a"] != 1 || runs["b"] != 0 {
		t.Errorf("runs %v, want a once and b never", runs)
	}
	mu.Lock()
	left := len(undos)
	mu.Unlock()
	if left != 0 {
		t.Errorf("%d undos still registered", left)
	}
	if _, err := Track(func() (func(), error) { return nil, errors.New("no space") }); err == nil {
		t.Error("a failed create was tracked")
	}
}

func TestErrorSaysTheSignalAndExitsLikeAShell(t *testing.T) {
	for _, c := range []struct {
		sig  syscall.Signal
		code int
		text string
	}{
		{syscall.SIGINT, 130, "interrupted by SIGINT: nothing written to runs/x"},
		{syscall.SIGTERM, 143, "interrupted by SIGTERM: nothing written to runs/x"},
	} {
		e := &Error{Signal: c.sig, Detail: "nothing written to runs/x"}
		if e.Code() != c.code || e.Error() != c.text || As(fmt.Errorf("task 3: %w", e)) != e {
			t.Errorf("%v: code %d, %q", c.sig, e.Code(), e.Error())
		}
	}
	if Err() != nil {
		t.Error("Err before any signal")
	}
}
