package tcav

// Design is the calibrated test's plan. The concept and the R random sets
// sit on a ring, the concept at position 0 and random set i at i+1, and
// every set is scored, as if it were the concept, against the sets within
// Reach positions on either side (all the others when the ring is that
// small). Each set's statistic is its mean TCAV score against those sets.
// Every position is treated alike, so under the null hypothesis (the
// concept set is one more draw of random images) the R+1 statistics are
// exchangeable and the concept's rank among them is an exact p-value
// (stats.RankTest). A pair of sets needs one CAV: the other direction is
// the same CAV turned around.
type Design struct{ R, Reach int }

// NewDesign plans the test for r random sets, each set scored against
// negatives others (rounded up to an even number, half on each side);
// negatives ≤ 0, or as many as the ring holds, means all of them.
func NewDesign(r, negatives int) Design {
	m := r + 1
	reach := (negatives + 1) / 2
	if negatives <= 0 || 2*reach >= m-1 {
		reach = m / 2
	}
	return Design{R: r, Reach: reach}
}

// neighbours returns the ring positions within Reach of p, nearest first.
func (d Design) neighbours(p int) []int {
	m := d.R + 1
	seen := map[int]bool{p: true}
	var out []int
	for step := 1; step <= d.Reach; step++ {
		for _, q := range []int{(p + step) % m, (p - step + m) % m} {
			if !seen[q] {
				seen[q] = true
				out = append(out, q)
			}
		}
	}
	return out
}

// Negatives is how many sets each set is scored against.
func (d Design) Negatives() int { return len(d.neighbours(0)) }

// Pairs lists the random-vs-random CAVs the design needs, each unordered
// pair once, as {i, j}: random i (the positive class) against random j,
// oriented along the ring. The concept's pairs are its CAVs against every
// random set, which the experiment fits anyway.
func (d Design) Pairs() [][2]int {
	m := d.R + 1
	seen := map[[2]int]bool{}
	var out [][2]int
	for p := 1; p < m; p++ {
		for step := 1; step <= d.Reach; step++ {
			q := (p + step) % m
			if q == 0 || q == p {
				continue
			}
			key := [2]int{min(p, q), max(p, q)}
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, [2]int{p - 1, q - 1})
		}
	}
	return out
}

// Statistics returns the concept's statistic and the R null statistics.
// scores[j] and sens[j] are the concept's TCAV score and sensitivities
// against random set j; pairScore[{i, j}] is random i scored against random
// j (both directions present).
func (d Design) Statistics(scores []float64, sens [][]float64, pairScore map[[2]int]float64) (obs float64, null []float64) {
	mean := func(p int, score func(q int) float64) float64 {
		ns := d.neighbours(p)
		sum := 0.0
		for _, q := range ns {
			sum += score(q)
		}
		return sum / float64(len(ns))
	}
	obs = mean(0, func(q int) float64 { return scores[q-1] })
	null = make([]float64, d.R)
	for i := range null {
		null[i] = mean(i+1, func(q int) float64 {
			if q == 0 {
				return flippedScore(sens[i])
			}
			return pairScore[[2]int{i, q - 1}]
		})
	}
	return obs, null
}
