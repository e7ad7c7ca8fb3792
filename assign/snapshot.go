package assign

import (
	"encoding/json"
	"errors"
)

// Snapshot is a compiled Config: every experiment validated and
// precomputed. It is immutable and safe for concurrent use; a new config
// revision means a new Snapshot.
type Snapshot struct {
	revision int64
	byKey    map[string]*Compiled
	running  []*Compiled // running experiments, in config order
	keys     []string    // keys of running, same order
}

// Compile validates every experiment of cfg (running or not) and compiles
// them. It reports every problem at once as an errors.Join of
// *ValidationError, each naming the experiment key and the field path:
// weights in (0, 1] summing to 1 (within 1e-9), 2 to 20 variants with
// unique keys, traffic in [0, 1], overrides naming real variants, a layer
// range within [0, 10000) with from < to when a layer is set, targeting
// that parses (with every audience it references in cfg.Audiences and no
// reference cycle), unique experiment keys, and no overlap between the ranges of
// running experiments in one layer.
func Compile(cfg Config) (*Snapshot, error) {
	s := &Snapshot{
		revision: cfg.Revision,
		byKey:    make(map[string]*Compiled, len(cfg.Experiments)),
	}
	errs := checkUniqueAndLayers(cfg.Experiments)
	for i := range cfg.Experiments {
		e := cfg.Experiments[i]
		c, cerrs := compileExperiment(&e, i, cfg.Audiences)
		if len(cerrs) > 0 {
			errs = append(errs, cerrs...)
			continue
		}
		if _, dup := s.byKey[c.key]; dup {
			continue // reported by checkUniqueAndLayers
		}
		s.byKey[c.key] = c
		if c.running {
			s.running = append(s.running, c)
			s.keys = append(s.keys, c.key)
		}
	}
	errs = append(errs, compileHoldouts(cfg.Holdouts, s.byKey, cfg.Experiments)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Revision returns the config revision the snapshot was compiled from.
func (s *Snapshot) Revision() int64 {
	if s == nil {
		return 0
	}
	return s.revision
}

// Lookup returns the compiled experiment with the given key, running or
// not.
func (s *Snapshot) Lookup(key string) (*Compiled, bool) {
	if s == nil {
		return nil, false
	}
	c, ok := s.byKey[key]
	return c, ok
}

// Keys returns the keys of the running experiments in config order. The
// slice is a copy.
func (s *Snapshot) Keys() []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s.keys...)
}

// Assign assigns one unit to one experiment. An unknown key, a stopped
// experiment or a nil snapshot gives ReasonNotRunning. attrs are the
// unit's attributes as encoding/json decodes them into map[string]any.
// The running holdouts covering the experiment that hash on the
// experiment's unit type hold the unit out as AssignHeld says; those on
// another unit type need that id: use AssignUnit.
func (s *Snapshot) Assign(experimentKey, unitID string, attrs map[string]any) Result {
	if s == nil {
		return notEnrolled(experimentKey, ReasonNotRunning)
	}
	c, ok := s.byKey[experimentKey]
	if !ok {
		return notEnrolled(experimentKey, ReasonNotRunning)
	}
	return c.assignSameType(unitID, attrs)
}

// assignSameType applies the holdouts on the experiment's own unit type.
func (c *Compiled) assignSameType(unitID string, attrs map[string]any) Result {
	if len(c.holdouts) == 0 {
		return c.Assign(unitID, attrs)
	}
	var held *CompiledHoldout
	for _, h := range c.holdouts {
		if h.unitType == c.def.UnitType && h.Holds(unitID) {
			held = h
			break
		}
	}
	return c.AssignHeld(unitID, attrs, held)
}

// AppendAssignAll appends to dst the assignment of the unit to every
// running experiment, in Keys order, and returns the extended slice.
func (s *Snapshot) AppendAssignAll(dst []Result, unitID string, attrs map[string]any) []Result {
	if s == nil {
		return dst
	}
	for _, c := range s.running {
		dst = append(dst, c.assignSameType(unitID, attrs))
	}
	return dst
}

// Reason says why a unit got, or did not get, a variant. Its values are part
// of the public JSON contract.
type Reason string

// Reasons, in the order assignment checks them.
const (
	// ReasonOverride: the unit id is listed in the experiment's overrides.
	ReasonOverride Reason = "override"
	// ReasonTargeting: the unit's attributes do not match the targeting.
	ReasonTargeting Reason = "targeting"
	// ReasonLayer: the unit's layer bucket is outside the experiment's range.
	ReasonLayer Reason = "layer"
	// ReasonTraffic: the unit's bucket falls in no variant's range.
	ReasonTraffic Reason = "traffic"
	// ReasonBucket: the unit is enrolled by hashing.
	ReasonBucket Reason = "bucket"
	// ReasonNotRunning: the experiment is unknown or not running.
	ReasonNotRunning Reason = "not_running"
	// ReasonOptedOut: the unit did not consent. Callers set it; assign never
	// returns it.
	ReasonOptedOut Reason = "opted_out"
	// ReasonHoldout: a running holdout covering the experiment holds the
	// unit out; it gets the control variant and is not enrolled.
	ReasonHoldout Reason = "holdout"
)

// Result is the outcome of assigning one unit to one experiment.
type Result struct {
	// Experiment is the experiment key.
	Experiment string `json:"experiment"`
	// Variant is the variant key, "" when not enrolled, the control's key
	// when held out (ReasonHoldout).
	Variant string `json:"variant,omitempty"`
	// Index is the variant's position (0 is the control), -1 when not
	// enrolled, 0 when held out.
	Index int `json:"-"`
	// Enrolled reports whether the unit is in a variant.
	Enrolled bool `json:"enrolled"`
	// Reason says why.
	Reason Reason `json:"reason"`
	// Payload is the variant's payload. It shares memory with the snapshot:
	// callers must not modify it.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Holdout is the key of the holdout that holds the unit out
	// (ReasonHoldout), "" otherwise.
	Holdout string `json:"holdout,omitempty"`
	// WouldEnroll reports, for a held-out unit, whether it would have been
	// enrolled without the holdout: such units are the holdout's arm in
	// its results.
	WouldEnroll bool `json:"-"`
}

// notEnrolled returns the Result of a unit that is in no variant.
func notEnrolled(key string, reason Reason) Result {
	return Result{Experiment: key, Index: -1, Reason: reason}
}
