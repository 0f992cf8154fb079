package nearest

import (
	"reflect"
	"testing"
)

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"alpha", "alfa", 2}, {"kitten", "sitting", 3}, {"abc", "", 3}} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestPathsPrefersCloseAndSharedPrefix(t *testing.T) {
	got := Paths("block2.inner.2", []string{"block1", "block2.inner.1", "head", "block2.inner", "block2.inner.0"}, 3)
	want := []string{"block2.inner.1", "block2.inner.0", "block2.inner"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
