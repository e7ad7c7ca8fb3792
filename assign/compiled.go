package assign

import (
	"encoding/json"
	"math"
)

// Compiled is one experiment ready to assign: validated, with its variant
// ranges, hash prefixes, override table and targeting tree precomputed. It
// is immutable and safe for concurrent use.
type Compiled struct {
	def       Experiment
	key       string
	running   bool
	variants  []compiledVariant
	overrides map[string]int // unit id -> variant index; nil when none
	targeting *Condition     // nil targets everyone

	variantHash hasher // state after salt + ":"
	layered     bool
	layerHash   hasher // state after "layer:" + layer + ":"
	layerFrom   int
	layerTo     int

	holdouts []*CompiledHoldout // running holdouts covering it, config order
}

// compiledVariant is a variant with its bucket range [start, end).
type compiledVariant struct {
	key        string
	payload    json.RawMessage
	start, end int
}

// variantRanges computes each variant's bucket range [start_i, end_i) as the
// contract defines it, in float64 exactly:
//
//	start_i = floor(10000*C_i + 1e-6)
//	end_i   = start_i + floor(10000*traffic*w_i + 1e-6)
//
// where C_i is the sum of the weights before variant i. The explicit
// float64 conversions round each product before the addition, so no
// platform may fuse them into a multiply-add with a different result.
func variantRanges(weights []float64, traffic float64) [][2]int {
	out := make([][2]int, len(weights))
	c := 0.0
	for i, w := range weights {
		start := int(math.Floor(float64(Buckets*c) + 1e-6))
		width := int(math.Floor(float64(Buckets*traffic*w) + 1e-6))
		out[i] = [2]int{start, start + width}
		c += w
	}
	return out
}

// compileExperiment validates e and compiles it. index is e's position in
// the config (-1 for a single experiment) and is used in error messages.
func compileExperiment(e *Experiment, index int, audiences Audiences) (*Compiled, []error) {
	v := &validator{key: e.Key, index: index}
	if e.Key == "" {
		v.add("key", "is required")
	}
	v.checkVariants(e.Variants)
	v.checkTraffic(e.Traffic)
	v.checkLayer(e.Layer, e.LayerRange)
	overrides := v.checkOverrides(e.Overrides, e.Variants)
	targeting := v.checkTargeting(e.Targeting, audiences)
	if len(v.errs) > 0 {
		return nil, v.errs
	}

	c := &Compiled{
		def:         *e,
		key:         e.Key,
		running:     e.Running,
		overrides:   overrides,
		targeting:   targeting,
		variantHash: prefixHasher(e.salt() + ":"),
	}
	weights := make([]float64, len(e.Variants))
	for i, vr := range e.Variants {
		weights[i] = vr.Weight
	}
	ranges := variantRanges(weights, e.Traffic)
	c.variants = make([]compiledVariant, len(e.Variants))
	for i, vr := range e.Variants {
		c.variants[i] = compiledVariant{key: vr.Key, payload: vr.Payload, start: ranges[i][0], end: ranges[i][1]}
	}
	if e.Layer != "" {
		c.layered = true
		c.layerHash = prefixHasher("layer:" + e.Layer + ":")
		c.layerFrom, c.layerTo = e.LayerRange.From, e.LayerRange.To
	}
	return c, nil
}

// Key returns the experiment key.
func (c *Compiled) Key() string { return c.key }

// Running reports whether the experiment assigns units.
func (c *Compiled) Running() bool { return c.running }

// Definition returns the experiment as it was compiled. Its slices and maps
// are shared with the snapshot: callers must not modify them.
func (c *Compiled) Definition() Experiment { return c.def }

// Range returns the bucket range [start, end) of variant i at the
// experiment's traffic. It panics if i is out of range.
func (c *Compiled) Range(i int) (start, end int) {
	v := &c.variants[i]
	return v.start, v.end
}

// Assign assigns one unit: not running, then override, targeting, layer,
// and finally traffic and variant by bucket. It never allocates for the
// targeting operators in common use, never errors and never panics.
func (c *Compiled) Assign(unitID string, attrs map[string]any) Result {
	if !c.running {
		return notEnrolled(c.key, ReasonNotRunning)
	}
	if c.overrides != nil {
		if i, ok := c.overrides[unitID]; ok {
			return c.enrolled(i, ReasonOverride)
		}
	}
	if c.targeting != nil && !c.targeting.Match(attrs) {
		return notEnrolled(c.key, ReasonTargeting)
	}
	if c.layered {
		if b := bucketAfter(c.layerHash, unitID); b < c.layerFrom || b >= c.layerTo {
			return notEnrolled(c.key, ReasonLayer)
		}
	}
	b := bucketAfter(c.variantHash, unitID)
	for i := range c.variants {
		if v := &c.variants[i]; v.start <= b && b < v.end {
			return c.enrolled(i, ReasonBucket)
		}
	}
	return notEnrolled(c.key, ReasonTraffic)
}

// Sticky reports whether units keep the arm they were first given
// (Experiment.Sticky).
func (c *Compiled) Sticky() bool { return c.def.Sticky }

// Enrolled returns the Result of a unit enrolled in variant i by
// bucketing, or false when i is not a variant's index.
func (c *Compiled) Enrolled(i int) (Result, bool) {
	if i < 0 || i >= len(c.variants) {
		return Result{}, false
	}
	return c.enrolled(i, ReasonBucket), true
}

// enrolled returns the Result for variant i.
func (c *Compiled) enrolled(i int, reason Reason) Result {
	v := &c.variants[i]
	return Result{
		Experiment: c.key,
		Variant:    v.key,
		Index:      i,
		Enrolled:   true,
		Reason:     reason,
		Payload:    v.payload,
	}
}
