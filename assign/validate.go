package assign

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
)

// Limits on an experiment's variants.
const (
	MinVariants = 2
	MaxVariants = 20
	// WeightTolerance is how far the sum of the weights may be from 1.
	WeightTolerance = 1e-9
)

// ValidationError is one problem with one experiment of a Config. Compile
// returns every problem it finds, joined with errors.Join; use errors.As to
// get the first one.
type ValidationError struct {
	// Experiment is the experiment's key ("" when the key is missing).
	Experiment string
	// Index is the experiment's position in Config.Experiments, or -1 when
	// a single experiment was validated.
	Index int
	// Field is the path of the faulty field inside the experiment, in the
	// API's notation: "variants[1].weight", "targeting.country.$in".
	Field string
	// Msg says what is wrong.
	Msg string
}

// Error formats the error as `experiment "key": field: message`.
func (e *ValidationError) Error() string {
	var who string
	switch {
	case e.Experiment != "":
		who = fmt.Sprintf("experiment %q", e.Experiment)
	case e.Index >= 0:
		who = fmt.Sprintf("experiments[%d]", e.Index)
	default:
		who = "experiment"
	}
	return who + ": " + e.Field + ": " + e.Msg
}

// Validate reports every problem with e as an errors.Join of
// *ValidationError, or nil. It checks what Compile checks for one
// experiment; Compile additionally checks that keys are unique and that
// running experiments of one layer do not overlap. It knows no audiences:
// a targeting that references one is invalid here, use Compile with
// Config.Audiences.
func (e Experiment) Validate() error {
	_, errs := compileExperiment(&e, -1, nil)
	return errors.Join(errs...)
}

// validator collects the problems of one experiment.
type validator struct {
	key   string
	index int
	errs  []error
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, &ValidationError{
		Experiment: v.key,
		Index:      v.index,
		Field:      field,
		Msg:        fmt.Sprintf(format, args...),
	})
}

// checkVariants validates count, keys, weights and payloads.
func (v *validator) checkVariants(vs []Variant) {
	if n := len(vs); n < MinVariants || n > MaxVariants {
		v.add("variants", "must have %d to %d variants, got %d", MinVariants, MaxVariants, n)
	}
	seen := make(map[string]int, len(vs))
	sum, weightsOK := 0.0, true
	for i, vr := range vs {
		field := fmt.Sprintf("variants[%d]", i)
		switch j, dup := seen[vr.Key]; {
		case vr.Key == "":
			v.add(field+".key", "is required")
		case dup:
			v.add(field+".key", "duplicate variant key %q (also variants[%d])", vr.Key, j)
		default:
			seen[vr.Key] = i
		}
		if math.IsNaN(vr.Weight) || vr.Weight <= 0 || vr.Weight > 1 {
			v.add(field+".weight", "must be in (0, 1], got %v", vr.Weight)
			weightsOK = false
		}
		sum += vr.Weight
		if len(vr.Payload) > 0 && !json.Valid(vr.Payload) {
			v.add(field+".payload", "is not valid JSON")
		}
	}
	if weightsOK && len(vs) > 0 && math.Abs(sum-1) > WeightTolerance {
		v.add(fmt.Sprintf("variants[%d].weight", len(vs)-1), "weights must sum to 1, got %v", sum)
	}
}

// checkTraffic validates the traffic fraction.
func (v *validator) checkTraffic(t float64) {
	if math.IsNaN(t) || t < 0 || t > 1 {
		v.add("traffic", "must be in [0, 1], got %v", t)
	}
}

// checkLayer validates the layer and its range.
func (v *validator) checkLayer(layer string, r *LayerRange) {
	switch {
	case layer != "" && r == nil:
		v.add("layer_range", "is required when layer is set")
	case layer == "" && r != nil:
		v.add("layer_range", "is set but layer is empty")
	case r != nil && (r.From < 0 || r.To > Buckets || r.From >= r.To):
		v.add("layer_range", "must satisfy 0 <= from < to <= %d, got %s", Buckets, r)
	}
}

// checkOverrides validates that every override names a variant and returns
// the unit id -> variant index map (nil when there are none).
func (v *validator) checkOverrides(overrides map[string]string, vs []Variant) map[string]int {
	if len(overrides) == 0 {
		return nil
	}
	ids := make([]string, 0, len(overrides))
	for id := range overrides {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make(map[string]int, len(overrides))
	for _, id := range ids {
		key := overrides[id]
		i := slices.IndexFunc(vs, func(vr Variant) bool { return vr.Key == key })
		if i < 0 {
			v.add("overrides."+id, "names unknown variant %q", key)
			continue
		}
		out[id] = i
	}
	return out
}

// checkTargeting parses the targeting condition; nil means everyone.
func (v *validator) checkTargeting(raw json.RawMessage, audiences Audiences) *Condition {
	cond, err := ParseConditionWith(raw, audiences)
	if err != nil {
		var ce *ConditionError
		if errors.As(err, &ce) {
			v.add(ce.Path, "%s", ce.Msg)
		} else {
			v.add("targeting", "%v", err)
		}
		return nil
	}
	if cond.IsEmpty() {
		return nil
	}
	return cond
}

// checkUniqueAndLayers adds config-level problems: duplicate keys, and
// running experiments of one layer whose ranges overlap.
func checkUniqueAndLayers(exps []Experiment) []error {
	var errs []error
	first := make(map[string]int, len(exps))
	type owner struct {
		index int
		r     LayerRange
	}
	layers := map[string][]owner{}
	for i := range exps {
		e := &exps[i]
		if j, dup := first[e.Key]; dup && e.Key != "" {
			errs = append(errs, &ValidationError{Experiment: e.Key, Index: i, Field: "key",
				Msg: fmt.Sprintf("duplicate experiment key (also experiments[%d])", j)})
		} else {
			first[e.Key] = i
		}
		if e.Running && e.Layer != "" && e.LayerRange != nil {
			layers[e.Layer] = append(layers[e.Layer], owner{i, *e.LayerRange})
		}
	}
	names := make([]string, 0, len(layers))
	for name := range layers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		os := layers[name]
		sort.SliceStable(os, func(a, b int) bool { return os[a].r.From < os[b].r.From })
		for k := 1; k < len(os); k++ {
			prev, cur := os[k-1], os[k]
			if cur.r.From < prev.r.To {
				errs = append(errs, &ValidationError{Experiment: exps[cur.index].Key, Index: cur.index,
					Field: "layer_range", Msg: fmt.Sprintf("%s overlaps %s of running experiment %q in layer %q",
						cur.r, prev.r, exps[prev.index].Key, name)})
			}
		}
	}
	return errs
}
