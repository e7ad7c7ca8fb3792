package flywheel

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"

	"github.com/flywheel-oss/flywheel/assign"
)

var (
	keyPattern      = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
	unitTypePattern = regexp.MustCompile(`^[a-z_]{1,32}$`)
	variantPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
)

// Limits on experiment definitions (docs/api.md, Limits).
const (
	MinVariants  = 2
	MaxVariants  = 20
	MaxOverrides = 1000
	// MaxMetricsPerExperiment bounds the metrics an experiment names, all
	// roles together: each is a block of every results document.
	MaxMetricsPerExperiment = 20
	// MaxPayloadBytes bounds a variant's payload, which every SDK fetches.
	MaxPayloadBytes = 16 << 10
	// MaxTargetingBytes bounds a targeting condition, which every SDK
	// fetches and compiles (its depth: assign.MaxConditionDepth).
	MaxTargetingBytes = 64 << 10
	// MaxLiveExperiments bounds the experiments that are not archived: the
	// configuration every SDK fetches and every server compiles.
	MaxLiveExperiments = 1000
	maxTextLen         = 10000
	maxUnitIDLen       = 256
	weightSumSlack     = 1e-9
)

// ValidKey reports whether s is a valid experiment, metric or layer key:
// ^[a-z0-9][a-z0-9_.-]{0,63}$.
func ValidKey(s string) bool { return keyPattern.MatchString(s) }

// Normalize fills the defaults of a new experiment: salt = key, analysis
// fixed, empty maps and lists instead of nil.
func (e *Experiment) Normalize() {
	if e.Salt == "" {
		e.Salt = e.Key
	}
	if e.Analysis == "" {
		e.Analysis = AnalysisFixed
	}
	if e.Overrides == nil {
		e.Overrides = map[string]string{}
	}
	for _, l := range []*[]string{&e.Metrics.Primary, &e.Metrics.Guardrails, &e.Metrics.Secondary} {
		if *l == nil {
			*l = []string{}
		}
	}
	if string(e.Targeting) == "null" || string(e.Targeting) == "{}" {
		e.Targeting = nil
	}
	e.normalizeBandit()
}

// Validate checks every rule of an experiment definition and reports all
// problems at once, each with its field path. metricExists says whether a
// metric key is defined; nil skips that check. A targeting that
// references a saved audience is invalid here: use ValidateWith.
func (e *Experiment) Validate(metricExists func(string) bool) error {
	return e.ValidateWith(metricExists, nil)
}

// ValidateWith is Validate with the saved audiences the targeting may
// reference ({"$audience": key}): an unknown one, or a reference cycle, is
// a problem at the reference's field path.
func (e *Experiment) ValidateWith(metricExists func(string) bool, audiences assign.Audiences) error {
	var p Problems
	if !keyPattern.MatchString(e.Key) {
		p.Add("key", "key must match ^[a-z0-9][a-z0-9_.-]{0,63}$")
	}
	if len(e.Name) > 200 {
		p.Add("name", "name must be at most 200 characters")
	}
	if len(e.Hypothesis) > maxTextLen {
		p.Add("hypothesis", "hypothesis must be at most %d characters", maxTextLen)
	}
	if !unitTypePattern.MatchString(e.UnitType) {
		p.Add("unit_type", "unit_type must match ^[a-z_]{1,32}$ (e.g. customer, device)")
	}
	validateVariants(&p, e.Variants)
	if math.IsNaN(e.Traffic) || e.Traffic < 0 || e.Traffic > 1 {
		p.Add("traffic", "traffic must be in [0, 1]")
	}
	if e.Layer != "" && !keyPattern.MatchString(e.Layer) {
		p.Add("layer", "layer must match ^[a-z0-9][a-z0-9_.-]{0,63}$")
	}
	if r := e.LayerRange; r != nil {
		switch {
		case e.Layer == "":
			p.Add("layer_range", "layer_range needs a layer")
		case r.From < 0 || r.To > assign.Buckets || r.From >= r.To:
			p.Add("layer_range", "layer_range must be [from, to) with 0 <= from < to <= %d", assign.Buckets)
		}
	}
	if len(e.Salt) > 128 {
		p.Add("salt", "salt must be at most 128 characters")
	}
	if len(e.Targeting) > MaxTargetingBytes {
		p.Add("targeting", "targeting must be at most %d bytes of JSON, got %d", MaxTargetingBytes, len(e.Targeting))
	} else if len(e.Targeting) > 0 {
		if _, err := assign.ParseConditionWith(e.Targeting, audiences); err != nil {
			addConditionProblem(&p, "targeting", "invalid targeting condition", err)
		}
	}
	validateOverrides(&p, e)
	validateMetricRefs(&p, e.Metrics, metricExists)
	if e.Analysis != AnalysisFixed && e.Analysis != AnalysisSequential {
		p.Add("analysis", "analysis must be fixed or sequential")
	}
	validateBandit(&p, e)
	if !e.Status.Valid() {
		p.Add("status", "unknown status %q", e.Status)
	}
	return p.Err()
}

// conditionField turns a condition error path into an API field path that
// always starts at "targeting".
func conditionField(path string) string {
	switch {
	case path == "" || path == "targeting":
		return "targeting"
	case len(path) > 10 && path[:10] == "targeting.":
		return path
	}
	return "targeting." + path
}

func validateVariants(p *Problems, vs []Variant) {
	if len(vs) < MinVariants || len(vs) > MaxVariants {
		p.Add("variants", "an experiment needs %d to %d variants, got %d", MinVariants, MaxVariants, len(vs))
		if len(vs) == 0 {
			return
		}
	}
	seen := map[string]int{}
	sum := 0.0
	for i, v := range vs {
		f := fmt.Sprintf("variants[%d]", i)
		if !variantPattern.MatchString(v.Key) {
			p.Add(f+".key", "variant key must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
		} else if j, dup := seen[v.Key]; dup {
			p.Add(f+".key", "variant key %q is also variants[%d].key; keys must be unique", v.Key, j)
		} else {
			seen[v.Key] = i
		}
		if math.IsNaN(v.Weight) || v.Weight <= 0 || v.Weight > 1 {
			p.Add(f+".weight", "weight must be in (0, 1]")
		}
		sum += v.Weight
		switch {
		case len(v.Payload) > MaxPayloadBytes:
			p.Add(f+".payload", "payload must be at most %d bytes of JSON, got %d", MaxPayloadBytes, len(v.Payload))
		case len(v.Payload) > 0 && !json.Valid(v.Payload):
			p.Add(f+".payload", "payload must be valid JSON")
		}
	}
	if math.Abs(sum-1) > weightSumSlack {
		p.Add("variants", "weights must sum to 1, got %.10g", sum)
	}
}

func validateOverrides(p *Problems, e *Experiment) {
	if len(e.Overrides) > MaxOverrides {
		p.Add("overrides", "at most %d overrides", MaxOverrides)
		return
	}
	keys := make(map[string]bool, len(e.Variants))
	for _, v := range e.Variants {
		keys[v.Key] = true
	}
	for _, id := range sortedKeys(e.Overrides) {
		f := "overrides." + id
		switch v := e.Overrides[id]; {
		case id == "" || len(id) > maxUnitIDLen:
			p.Add("overrides", "override unit ids must be 1 to %d bytes", maxUnitIDLen)
		case !keys[v]:
			p.Add(f, "override names variant %q, which is not a variant of this experiment", v)
		}
	}
}

func validateMetricRefs(p *Problems, m MetricRefs, exists func(string) bool) {
	if n := len(m.Keys()); n > MaxMetricsPerExperiment {
		p.Add("metrics", "an experiment may name at most %d metrics (primary, guardrails and secondary together), got %d", MaxMetricsPerExperiment, n)
	}
	for _, g := range []struct {
		name string
		keys []string
	}{{"primary", m.Primary}, {"guardrails", m.Guardrails}, {"secondary", m.Secondary}} {
		seen := map[string]bool{}
		for i, k := range g.keys {
			f := fmt.Sprintf("metrics.%s[%d]", g.name, i)
			switch {
			case seen[k]:
				p.Add(f, "metric %q is listed twice", k)
			case exists != nil && !exists(k):
				p.Add(f, "unknown metric %q (create it with POST /v1/metrics first)", k)
			}
			seen[k] = true
		}
	}
}
