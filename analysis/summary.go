package analysis

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/flywheel-oss/flywheel"
)

// summarize writes the plain-English reading of a metric, one sentence per
// non-control variant joined by "; ", e.g.
//
//	green raises purchase by 10.9% (95% CI 2.0% to 20.0%), p = 0.011: significant
//	green lowers refund by 3.2% (95% CI -6.1% to -0.3%), p = 0.030: significant (good: refund should decrease)
//
// Rules:
//   - The verb follows the sign of diff: raises, lowers, or leaves … unchanged.
//   - The size is the relative lift and its interval, as percentages rounded
//     to one decimal, when the control mean is positive; otherwise the
//     absolute difference and its interval, to three significant digits.
//   - The level is 100·(1 − alpha), without trailing zeros ("95%", "99.9%").
//     Sequential experiments say "confidence sequence" and "always-valid p".
//   - p has two significant digits, more when two would round it across
//     alpha, and "p < 0.001" below 0.001. When the corrected p-value differs
//     from p it follows as "(adjusted …)"; significance is decided on it.
//   - A "decrease" metric always ends with "(good: … should decrease)" or
//     "(bad: …)"; an "increase" metric that went down ends with
//     "(bad: … should increase)".
//   - A failed SRM check appends "(sample ratio mismatch: do not trust)".
//   - Without a p-value: "<variant> vs <control> on <metric>: not enough data".
func summarize(m MetricResult, alpha float64, sequential, srmOK bool) string {
	if len(m.Variants) < 2 {
		return ""
	}
	control := m.Variants[0]
	var parts []string
	for _, v := range m.Variants[1:] {
		parts = append(parts, sentence(m, control, v, alpha, sequential, srmOK))
	}
	return strings.Join(parts, "; ")
}

func sentence(m MetricResult, control, v VariantResult, alpha float64, sequential, srmOK bool) string {
	c := v.Comparison
	if c == nil || !c.PValue.Defined() || !c.Diff.Defined() {
		return fmt.Sprintf("%s vs %s on %s: not enough data", v.Variant, control.Variant, m.Metric)
	}
	diff := float64(c.Diff.Estimate)
	var b strings.Builder
	b.WriteString(v.Variant)
	interval := "CI"
	if sequential {
		interval = "confidence sequence"
	}
	level := shortPercent(1 - alpha)
	useLift := float64(control.Mean) > 0 && c.Lift.Defined()
	switch {
	case diff > 0:
		b.WriteString(" raises " + m.Metric + " by ")
	case diff < 0:
		b.WriteString(" lowers " + m.Metric + " by ")
	default:
		b.WriteString(" leaves " + m.Metric + " unchanged")
	}
	if useLift {
		if diff != 0 {
			b.WriteString(percent(math.Abs(float64(c.Lift.Estimate))))
		}
		fmt.Fprintf(&b, " (%s %s %s to %s)", level, interval, percent(float64(c.Lift.CI[0])), percent(float64(c.Lift.CI[1])))
	} else {
		if diff != 0 {
			b.WriteString(number(math.Abs(diff)))
		}
		fmt.Fprintf(&b, " (%s %s %s to %s)", level, interval, number(float64(c.Diff.CI[0])), number(float64(c.Diff.CI[1])))
	}
	p, adj := float64(c.PValue), float64(c.PValueAdjusted)
	b.WriteString(", ")
	if sequential {
		b.WriteString("always-valid ")
	}
	b.WriteString(pEquals(p, alpha))
	if !math.IsNaN(adj) && formatPAt(adj, alpha) != formatPAt(p, alpha) {
		a := formatPAt(adj, alpha)
		if !strings.HasPrefix(a, "<") {
			a = "= " + a
		}
		b.WriteString(" (adjusted p " + a + ")")
	}
	if c.Significant {
		b.WriteString(": significant")
	} else {
		b.WriteString(": not significant")
	}
	switch {
	case m.Direction == flywheel.DirectionDecrease && diff < 0:
		b.WriteString(" (good: " + m.Metric + " should decrease)")
	case m.Direction == flywheel.DirectionDecrease && diff > 0:
		b.WriteString(" (bad: " + m.Metric + " should decrease)")
	case m.Direction != flywheel.DirectionDecrease && diff < 0:
		b.WriteString(" (bad: " + m.Metric + " should increase)")
	}
	if !srmOK {
		b.WriteString(" (sample ratio mismatch: do not trust)")
	}
	return b.String()
}

// pEquals returns "p = 0.011" or "p < 0.001".
func pEquals(p, alpha float64) string {
	s := formatPAt(p, alpha)
	if strings.HasPrefix(s, "<") {
		return "p " + s
	}
	return "p = " + s
}

// formatPAt formats p with two significant digits, or more when rounding
// would move it across alpha, and as "< 0.001" below 0.001.
func formatPAt(p, alpha float64) string {
	switch {
	case math.IsNaN(p):
		return "n/a"
	case p < 0.001:
		return "< 0.001"
	}
	for digits := 2; ; digits++ {
		s := strconv.FormatFloat(p, 'g', digits, 64)
		r, _ := strconv.ParseFloat(s, 64)
		if (r < alpha) == (p < alpha) || digits >= 17 {
			return s
		}
	}
}

// formatP formats a p-value of a health check, two significant digits.
func formatP(p float64) string {
	return strconv.FormatFloat(p, 'g', 2, 64)
}

// number formats an absolute difference to three significant digits.
func number(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(x, 'g', 3, 64)
}
