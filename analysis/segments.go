package analysis

import (
	"slices"

	"github.com/flywheel-oss/flywheel"
)

// segments analyses each value of the segment attribute on its own: the
// metrics with segment rows, SRM and small-sample checks, with the families of the
// multiple-comparison correction formed within the segment. Sequential
// experiments take a single look per segment (no stored state).
func (an *analyzer) segments(in Input, roles []flywheel.MetricRole, defs map[string]flywheel.Metric, attribute string) map[string]SegmentResult {
	var values []string
	for _, a := range in.SegmentArms {
		if !slices.Contains(values, a.Segment) {
			values = append(values, a.Segment)
		}
	}
	for _, r := range in.SegmentStats {
		if !slices.Contains(values, r.Segment) {
			values = append(values, r.Segment)
		}
	}
	slices.Sort(values)

	out := make(map[string]SegmentResult, len(values))
	caveat := segmentWarning(attribute, len(values))
	for _, value := range values {
		units, _, _ := armCounts(an.variants, in.SegmentArms, value)
		split := an.variants
		if an.srmSplit != nil {
			split = an.srmSplit
		}
		srm := srmCheck(units, split)
		seg := &analyzer{
			opts:       an.opts,
			variants:   an.variants,
			sequential: an.sequential,
			srmOK:      srm.OK,
			segment:    true,
		}
		metrics := seg.metrics(roles, defs, groupRows(in.SegmentStats, value))
		res := SegmentResult{
			Segment:     attribute,
			Value:       value,
			Exploratory: true,
			SRM:         srm,
			Metrics:     filterMetrics(metrics, an.opts.MetricFilter),
			Warnings:    []string{caveat},
		}
		for _, n := range units {
			res.Units += n
		}
		if !srm.OK {
			res.Warnings = append(res.Warnings, srmWarning(srm, an.variants))
		}
		if w := sizeWarning(units, an.variants); w != "" {
			res.Warnings = append(res.Warnings, w)
		}
		out[value] = res
	}
	return out
}
