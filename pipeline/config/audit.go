package config

import (
	"reflect"

	"gopkg.in/yaml.v3"
)

// Audit asks, of every TCAV concept set, whether it looks tampered with, and
// gives a TCAV score that survives tampering (package audit). The section's
// presence enables it: `audit: {}` runs it with the defaults.
type Audit struct {
	// Enabled is true when the config has an audit section.
	Enabled bool `yaml:"-"`
	// Concepts are the sets audited. Default: tcav.concepts (and, in a run
	// with the attack stage, the poisoned sets it wrote).
	Concepts []string `yaml:"concepts"`
	// RandomSets is how many random sets each audited set's CAVs are fitted
	// against. Default: 8 (at most tcav.random less one).
	RandomSets int `yaml:"random_sets"`
	// CalibrationSets is how many of the random sets are audited as
	// concepts to calibrate the threshold. Default: 20 (or all, if fewer).
	CalibrationSets int `yaml:"calibration_sets"`
	// FalseAlarm is the false-alarm rate the threshold is calibrated for on
	// the random sets audited as concepts. Default: 0.05.
	FalseAlarm float64 `yaml:"false_alarm"`
	// MinScore is the lowest threshold on the combined score (a z-score
	// against the random sets), whatever the calibration. Default: 3.
	MinScore float64 `yaml:"min_score"`
	// Attacked also audits the poisoned sets this run's attack stage wrote.
	// Default: true.
	Attacked bool `yaml:"attacked"`
}

// DefaultAudit is the audit section before the YAML's keys are read.
func DefaultAudit() Audit {
	return Audit{RandomSets: 8, CalibrationSets: 20, FalseAlarm: 0.05, MinScore: 3, Attacked: true}
}

func (a *Audit) decodeYAML(d *decoder, n *yaml.Node, key string) error {
	a.Enabled = true
	return d.fields(n, reflect.ValueOf(a).Elem(), key)
}

// MarshalYAML writes no section when the audit is off.
func (a Audit) MarshalYAML() (any, error) {
	if !a.Enabled {
		return nil, nil
	}
	type plain Audit
	return plain(a), nil
}

func (c *Config) validateAudit(v *validator) {
	a := c.Audit
	if !a.Enabled {
		return
	}
	v.check(a.RandomSets >= 2, "audit.random_sets", "is %d; want at least 2", a.RandomSets)
	v.check(a.CalibrationSets >= 3, "audit.calibration_sets", "is %d; want at least 3", a.CalibrationSets)
	v.check(a.FalseAlarm > 0 && a.FalseAlarm < 1, "audit.false_alarm", "is %g; want a rate in (0, 1)", a.FalseAlarm)
	v.check(len(c.TCAV.Random.Sets) >= 3, "tcav.random", "the audit calibrates on the random sets and needs at least 3, has %d", len(c.TCAV.Random.Sets))
	for _, s := range a.Concepts {
		v.check(s != "", "audit.concepts", "holds an empty set name")
	}
}

// AuditPurifications are the names of the audit's purifications (package
// audit), which attack.*.adaptive.purifications may name.
var AuditPurifications = []string{"jpeg90", "jpeg75", "blur", "resize", "bits5"}
