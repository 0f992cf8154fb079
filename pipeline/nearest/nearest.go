// Package nearest finds what a user probably meant: the known names closest
// to a misspelled one, for error messages.
package nearest

import (
	"sort"
	"strings"
)

// Distance is the Levenshtein distance between a and b.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Paths returns up to n dotted paths closest to p: by edit distance, ties
// going to those that share more leading path segments.
func Paths(p string, candidates []string, n int) []string {
	type scored struct {
		s            string
		dist, shared int
	}
	all := make([]scored, 0, len(candidates))
	for _, c := range candidates {
		all = append(all, scored{c, Distance(p, c), sharedSegments(p, c)})
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].dist != all[j].dist {
			return all[i].dist < all[j].dist
		}
		return all[i].shared > all[j].shared
	})
	out := make([]string, 0, n)
	for i := 0; i < len(all) && i < n; i++ {
		out = append(out, all[i].s)
	}
	return out
}

func sharedSegments(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	k := 0
	for k < len(as) && k < len(bs) && as[k] == bs[k] {
		k++
	}
	return k
}
