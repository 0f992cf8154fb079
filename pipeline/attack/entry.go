package attack

import (
	"fmt"

	"github.com/cavforge/cavforge/pipeline/tcav"
)

// Entry is one attack at one budget.
type Entry struct {
	Concept   string  `json:"concept"`
	Target    string  `json:"target"`
	Layer     string  `json:"layer"`
	Goal      string  `json:"goal"`
	Objective string  `json:"objective,omitempty"`
	Eps       float64 `json:"eps"`
	Norm      string  `json:"norm"`

	Before tcav.SetScore `json:"before"`
	After  tcav.SetScore `json:"after"`

	Linf     float64 `json:"linf"`
	L2Mean   float64 `json:"l2_mean"`
	PSNRMean float64 `json:"psnr_mean"`
	// ChangedPrediction is the share (0..1) of perturbed concept images whose
	// predicted class differs from that of the clean image.
	ChangedPrediction float64 `json:"changed_prediction"`
	// ClassLogitChange is the mean change of the target class's logit over
	// the perturbed concept images, against their clean versions.
	ClassLogitChange float64 `json:"class_logit_change"`
	// StealthWeight is the weight of the attack's stealth term (0: off).
	StealthWeight float64 `json:"stealth_weight"`
	// StealthForm is the stealth term's form (margin or kl) when it is on.
	StealthForm string `json:"stealth_form,omitempty"`
	// Adaptive are the audit purifications the attack optimized through
	// (attack.*.adaptive), and its penalties' weights.
	Adaptive        []string `json:"adaptive,omitempty"`
	ShiftWeight     float64  `json:"shift_weight,omitempty"`
	AlignmentWeight float64  `json:"alignment_weight,omitempty"`
	// Images is the run-relative directory of the perturbed images.
	Images string `json:"images"`
	// Transfer is the same judgment where one thing an analyst might do
	// differently is changed: another CAV classifier, another
	// preprocessing, a JPEG round trip of the files.
	Transfer []Transfer `json:"transfer,omitempty"`
}

// Transfer is an attack's before/after scores with one thing changed.
type Transfer struct {
	Kind    string        `json:"kind"`    // classifier | preprocessing | jpeg
	Setting string        `json:"setting"` // e.g. "logistic", "no crop", "quality 90"
	Before  tcav.SetScore `json:"before"`
	After   tcav.SetScore `json:"after"`
}

// StealthLabel names an attack's stealth setting: "off", or its form and
// weight ("margin 10").
func (a Entry) StealthLabel() string {
	if a.StealthWeight <= 0 {
		return "off"
	}
	return fmt.Sprintf("%s %g", a.StealthForm, a.StealthWeight)
}
