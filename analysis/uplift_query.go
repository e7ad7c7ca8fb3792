package analysis

import (
	"slices"
	"strings"

	"github.com/flywheel-oss/flywheel"
)

// ValidAttribute reports whether name can be named in by=: it matches
// ^[A-Za-z0-9_.-]{1,64}$.
func ValidAttribute(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ParseUpliftBy reads by= (comma-separated exposure attributes): up to
// MaxUpliftAttributes distinct names of the form ^[A-Za-z0-9_.-]{1,64}$;
// empty (nil) means the experiment's own attributes.
func ParseUpliftBy(raw string) ([]string, error) {
	if raw == "" {
		return nil, nil
	}
	parts := strings.Split(raw, ",")
	if len(parts) > MaxUpliftAttributes {
		return nil, flywheel.Invalid("by", "by names %d attributes; at most %d (the policy's segments are their combinations, which thin out fast)", len(parts), MaxUpliftAttributes)
	}
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if !ValidAttribute(p) {
			return nil, flywheel.Invalid("by", "by: %q is not an exposure attribute name (^[A-Za-z0-9_.-]{1,64}$)", p)
		}
		if slices.Contains(out, p) {
			return nil, flywheel.Invalid("by", "by names %q twice", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// ValidateUplift checks the options and the metric of an uplift analysis
// of e: the metric must be one of the experiment's, and not a ratio (its
// per-unit value is a pair).
func ValidateUplift(e flywheel.Experiment, m flywheel.Metric, o UpliftOptions) error {
	var p flywheel.Problems
	if o.Alpha != 0 && !(o.Alpha > 0 && o.Alpha <= 0.5) {
		p.Add("alpha", "alpha must be in (0, 0.5]")
	}
	if o.MinUnits != 0 && (o.MinUnits < 2 || o.MinUnits > 1_000_000) {
		p.Add("min_units", "min_units must be an integer in [2, 1000000]")
	}
	if !slices.ContainsFunc(e.Metrics.All(), func(r flywheel.MetricRole) bool { return r.Key == m.Key }) {
		p.Add("metric", "experiment %q has no metric %q", e.Key, m.Key)
	} else if m.Type == flywheel.MetricRatio {
		p.Add("metric", "metric %q is a ratio; uplift takes conversion, mean, count and retention metrics", m.Key)
	}
	return p.Err()
}
