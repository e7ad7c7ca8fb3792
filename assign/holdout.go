package assign

import (
	"fmt"
	"math"
)

// MaxHoldoutFraction is the largest share of units a holdout may keep out
// of its program: a holdout measures the program's total effect, and
// keeping more than a tenth of the units from every covered experiment
// costs those experiments too much power.
const MaxHoldoutFraction = 0.1

// HoldoutPrefix starts the key under which a holdout's exposures are
// recorded ("holdout:" + key). Experiment keys cannot contain ':', so the
// two never collide.
const HoldoutPrefix = "holdout:"

// The variants of a holdout's analysis: the units held out and the units
// exposed to the program.
const (
	HoldoutHeldOut = "holdout"
	HoldoutExposed = "exposed"
)

// Holdout keeps a small, stable share of the units of one unit type out of
// a program of experiments (listed by key, or every experiment of a listed
// layer), so that the program's total effect can be measured against
// them. It is also the wire format of each holdout in GET /v1/sdk/config.
//
// A unit is held out when Bucket("holdout:" + key + ":" + id) <
// floor(10000*fraction + 1e-6), where id is the unit's id of the holdout's
// unit type: the bucket uses its own salt, so it is independent of every
// experiment's, and raising the fraction only ever adds held-out units.
type Holdout struct {
	Key         string   `json:"key"`
	UnitType    string   `json:"unit_type"`
	Fraction    float64  `json:"fraction"`
	Experiments []string `json:"experiments,omitempty"`
	Layers      []string `json:"layers,omitempty"`
	// Running is false for holdouts that hold nobody out.
	Running bool `json:"running"`
}

// HoldoutError is one problem with one holdout of a Config.
type HoldoutError struct {
	Holdout string // the holdout's key
	Index   int    // its position in Config.Holdouts
	Field   string
	Msg     string
}

// Error formats the error as `holdouts[i] "key": field: message`.
func (e *HoldoutError) Error() string {
	return fmt.Sprintf("holdouts[%d] %q: %s: %s", e.Index, e.Holdout, e.Field, e.Msg)
}

// CompiledHoldout is a running holdout ready to decide membership.
type CompiledHoldout struct {
	key      string
	unitType string
	hash     hasher // state after "holdout:" + key + ":"
	cut      int    // units with a bucket below cut are held out
}

// Key returns the holdout's key.
func (h *CompiledHoldout) Key() string { return h.key }

// UnitType returns the unit type the holdout hashes on.
func (h *CompiledHoldout) UnitType() string { return h.unitType }

// Holds reports whether the unit with the given id (of the holdout's unit
// type) is held out. An empty id is never held out.
func (h *CompiledHoldout) Holds(id string) bool {
	return id != "" && bucketAfter(h.hash, id) < h.cut
}

// HoldoutCut returns the bucket bound of a fraction: floor(10000*f + 1e-6).
func HoldoutCut(fraction float64) int {
	return int(math.Floor(float64(Buckets*fraction) + 1e-6))
}

// compileHoldouts validates the holdouts of a config and attaches each
// running one to the experiments it covers (listed directly, or in a
// listed layer), in config order.
func compileHoldouts(hs []Holdout, byKey map[string]*Compiled, exps []Experiment) []error {
	var errs []error
	seen := map[string]int{}
	for i := range hs {
		h := &hs[i]
		add := func(field, format string, args ...any) {
			errs = append(errs, &HoldoutError{Holdout: h.Key, Index: i, Field: field, Msg: fmt.Sprintf(format, args...)})
		}
		if h.Key == "" {
			add("key", "is required")
		} else if j, dup := seen[h.Key]; dup {
			add("key", "duplicate holdout key (also holdouts[%d])", j)
		} else {
			seen[h.Key] = i
		}
		if h.UnitType == "" {
			add("unit_type", "is required")
		}
		if math.IsNaN(h.Fraction) || h.Fraction < 0 || h.Fraction > MaxHoldoutFraction {
			add("fraction", "must be in [0, %g], got %v", MaxHoldoutFraction, h.Fraction)
		}
	}
	if len(errs) > 0 || len(byKey) == 0 {
		return errs
	}
	for i := range hs {
		h := &hs[i]
		if !h.Running {
			continue
		}
		ch := &CompiledHoldout{key: h.Key, unitType: h.UnitType, hash: prefixHasher(HoldoutPrefix + h.Key + ":"), cut: HoldoutCut(h.Fraction)}
		covered := map[string]bool{}
		for _, k := range h.Experiments {
			covered[k] = true
		}
		layers := map[string]bool{}
		for _, l := range h.Layers {
			layers[l] = true
		}
		for j := range exps {
			e := &exps[j]
			if !covered[e.Key] && (e.Layer == "" || !layers[e.Layer]) {
				continue
			}
			if c, ok := byKey[e.Key]; ok && !containsHoldout(c.holdouts, ch) {
				c.holdouts = append(c.holdouts, ch)
			}
		}
	}
	return nil
}

func containsHoldout(hs []*CompiledHoldout, h *CompiledHoldout) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

// Holdouts returns the running holdouts that cover the experiment, in
// config order. The slice is shared: callers must not modify it.
func (c *Compiled) Holdouts() []*CompiledHoldout { return c.holdouts }

// HeldOutBy returns the first running holdout covering the experiment
// that holds out the unit, or nil. id returns the unit's id of a unit type
// ("" when the unit has none).
func (c *Compiled) HeldOutBy(id func(unitType string) string) *CompiledHoldout {
	for _, h := range c.holdouts {
		if h.Holds(id(h.unitType)) {
			return h
		}
	}
	return nil
}

// AssignHeld assigns one unit that the holdout h holds out (h nil: Assign).
// An override still wins (QA sees the variant it asked for); any other
// unit gets the control variant with Enrolled false, Reason "holdout",
// Holdout h's key, and WouldEnroll telling whether the unit would have
// been enrolled had it not been held out (only those units are recorded
// in the holdout's results, so that both arms are the same population).
func (c *Compiled) AssignHeld(unitID string, attrs map[string]any, h *CompiledHoldout) Result {
	r := c.Assign(unitID, attrs)
	if h == nil || r.Reason == ReasonOverride || r.Reason == ReasonNotRunning {
		return r
	}
	v := &c.variants[0]
	return Result{
		Experiment:  c.key,
		Variant:     v.key,
		Index:       0,
		Reason:      ReasonHoldout,
		Holdout:     h.key,
		WouldEnroll: r.Enrolled,
		Payload:     v.payload,
	}
}

// AssignUnit assigns a unit known by its ids (unit type -> id) to one
// experiment: the experiment's unit type picks the id to bucket on, and
// each covering holdout's unit type the id it hashes (so that a
// customer's devices share the customer's holdout status when the
// customer id is given). A unit without an id of the experiment's unit
// type is assigned as the id "" (the SDK answers no_unit_id instead).
func (s *Snapshot) AssignUnit(experimentKey string, ids map[string]string, attrs map[string]any) Result {
	if s == nil {
		return notEnrolled(experimentKey, ReasonNotRunning)
	}
	c, ok := s.byKey[experimentKey]
	if !ok {
		return notEnrolled(experimentKey, ReasonNotRunning)
	}
	h := c.HeldOutBy(func(t string) string { return ids[t] })
	return c.AssignHeld(ids[c.def.UnitType], attrs, h)
}
