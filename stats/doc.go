// Package stats is the statistics of Flywheel: hypothesis tests, confidence
// intervals, CUPED, ANCOVA, ratio metrics, sample-ratio mismatch, Bayesian
// chance to win, multiple-comparison adjustment, always-valid sequential
// tests and power analysis.
//
// The package works from sufficient statistics, never from unit rows: the
// server aggregates in PostgreSQL and only per-arm sums (N, Σy, Σy², and for
// CUPED Σx, Σx², Σxy) leave the database. Summary, Proportion, Moments and
// RatioSummary carry them.
//
// The formulas, and the numbers they must reproduce, are pinned by
// internal/testdata/stats-cases/README.md (R 4.2.2: prop.test, t.test,
// lm, p.adjust, power.prop.test, power.t.test). Every difference is
// variant − control.
//
// Undefined values are NaN: a relative lift when the control mean is 0, a
// test statistic when both arms have zero variance, a variance from fewer
// than two units. Callers map NaN to JSON null. No function panics on such
// input.
//
// stats is pure. It imports only the standard library and gonum (distuv,
// mathext); it must not import net/http, database drivers, logging, the
// clock or any other Flywheel package, and it holds no mutable package
// state.
package stats
