package tcav

import (
	"github.com/cavforge/cavforge/pipeline/activations"
	"github.com/cavforge/cavforge/pipeline/cav"
	"github.com/cavforge/cavforge/pipeline/stats"
)

// Judge scores one concept set's activations against random sets as the
// TCAV stage would: the attack stage judges its poisoned sets with it, the
// audit the sets it purifies.
type Judge struct {
	Fitter *cav.Fitter
	Device string
	// Significance is the TCAV stage's, corrected as it corrects the same
	// concept, so that a "before" verdict is the one the TCAV table shows.
	Significance Significance
}

// Score fits concept's CAVs against randoms with m and scores them along
// grads.
func (j Judge) Score(target string, concept *activations.Activations, randoms []*activations.Activations,
	grads *activations.Activations, m cav.Method) (SetScore, error) {
	l, err := FitLayer(j.Fitter, []*activations.Activations{concept}, randoms, m, j.Significance)
	if err != nil {
		return SetScore{}, err
	}
	l.Target, l.Grads = target, grads
	entries, err := Entries(j.Device, *l, j.Significance)
	if err != nil {
		return SetScore{}, err
	}
	x := entries[0]
	rm := stats.Mean(x.RandomScores)
	return SetScore{Mean: x.Mean, Std: x.Std, PValue: x.PValue, Significant: x.Significant,
		Direction: x.Direction, Resolution: x.Resolution, RandomMean: &rm}, nil
}
