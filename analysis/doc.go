// Package analysis turns an experiment and the sufficient statistics the
// database aggregates for it into the results document of
// GET /v1/experiments/{key}/results, the answers of POST /v1/power and the
// cumulative series of /results/timeseries.
//
// It is pure glue between package flywheel (the vocabulary) and package
// stats (the formulas): it imports only those two and the standard library,
// does no I/O, never reads the clock (times come in through Input), keeps no
// mutable package state and does not log. Every number it reports is
// computed by stats, from per-arm sums (see MetricStats); undefined values
// are NaN inside and JSON null outside (see Float).
//
// # Choices
//
// Tests. conversion and retention: stats.ProportionTest (pooled z-test,
// unpooled Wald interval, delta-method lift) and stats.BayesProportions
// (Beta(1,1) priors, exact). mean and count: stats.Welch and
// stats.BayesMeans, with a CUPED block (stats.FitCUPED over every arm, then
// CUPED.Compare) when the pre-exposure covariate varies. ratio:
// stats.RatioTest and stats.BayesMeans on the delta-method moments.
//
// Direction. p_value, diff and lift are always variant − control. For a
// metric whose direction is "decrease", chance_to_win is P(variant < control)
// (the chance the variant is better) and expected_loss is
// E[max(variant − control, 0)], the expected harm of shipping it, in the
// metric's units; significant still means p_value_adjusted < alpha in either
// direction, and the summary says whether the change is good or bad.
//
// Multiple comparisons. p_value_adjusted is Holm (Options.Adjustment: BH or
// none selectable) over a family: every non-control variant × every primary
// metric; guardrail metrics form a second family and secondary metrics a
// third. Families are built before Options.MetricFilter applies, so filtering
// the view never changes a number. The CUPED p-value gets its own
// p_value_adjusted, from the same family with each CUPED p-value in place of
// its raw one. significant = p_value_adjusted < alpha.
//
// Health. Sample ratio mismatch: stats.SRM against the configured weights,
// ok unless p < 0.001 (SRMThreshold). Warnings: SRM; multiple exposures above
// 1% of units; fewer than 100 units in an arm, or none; a pre-exposure
// difference at p < 0.01 on a primary metric; device crossover above 1%;
// opt-out rates that differ from control's at p < 0.01; units still inside
// a metric's window; and, per primary metric, the units per arm needed to
// detect Options.RelativeMDE (default 5%) with Options.Power (default 80%)
// at alpha divided by the size of the primary family, when the smallest arm
// has fewer.
//
// Sequential experiments. p_value is the mSPRT always-valid p-value and ci
// its confidence sequence (stats.LookResult), on the cumulative statistics.
// The server stores one SequentialState per (metric, variant) and passes it
// back at the next recompute; Results.Sequential holds the states to store.
// τ² is fixed at the first look with data and kept in the state, as the
// test's validity requires: the square of the effect the experiment hopes
// to detect, (Options.RelativeMDE · |control mean|)², or, when the control
// mean is 0, (Options.RelativeMDE · per-unit standard deviation)². The lift
// interval of a sequential comparison is the confidence sequence divided by
// the control mean, which ignores the control mean's own uncertainty. There
// is no CUPED block in sequential results.
//
// Segments. With Options.Segment the same analysis runs within each value of
// the segment attribute (for the metrics that have segment rows, without the
// sample-size check), flagged exploratory: adjusted within the segment only,
// never for the number of segments; sequential experiments use a single look
// there, which is valid but conservative.
//
// Summary lines (MetricResult.Summary), one sentence per non-control
// variant, e.g. "green raises purchase by 10.9% (95% CI 2.0% to 20.0%),
// p = 0.011: significant". The lift and its interval are percentages
// rounded to one decimal (the absolute difference to three significant
// digits when the control mean is not positive); the level is 100·(1 −
// alpha) without trailing zeros; p has two significant digits (more when
// two would round it across alpha) and reads "p < 0.001" below 0.001, with
// "(adjusted p = …)" when the corrected value rounds differently. A
// "decrease" metric ends with "(good: refund should decrease)" or "(bad: …)",
// an "increase" metric that went down with "(bad: … should increase)", and
// a failed SRM check adds "(sample ratio mismatch: do not trust)".
package analysis
