package progress

import (
	"bytes"
	"strings"
	"testing"
)

func TestBarDrawsAndFinishes(t *testing.T) {
	var buf bytes.Buffer
	bars := &Bars{W: &buf}
	b := bars.New("extract striped", 4)
	b.Add(1)
	b.Done()
	out := buf.String()
	if !strings.Contains(out, "extract striped") || !strings.Contains(out, "4/4") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("output %q", out)
	}
}

func TestNilBarsDrawNothing(t *testing.T) {
	var bars *Bars
	b := bars.New("x", 3)
	b.Add(1) // must not panic
	b.Done()
	if b != nil {
		t.Fatal("nil Bars made a bar")
	}
}
