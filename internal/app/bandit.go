package app

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
	"github.com/flywheel-oss/flywheel/stats"
	"github.com/flywheel-oss/flywheel/store"
)

// banditDraws is the number of joint posterior draws per update: the
// Monte Carlo error of a probability is at most 0.5/√20000 = 0.0035.
const banditDraws = 20000

// UpdateBandits runs one update cycle of every running bandit experiment
// at now (the background loop passes the wall clock; tests pass their
// own): each one past its burn-in and its period gets new weights, a new
// epoch and an audit row (store.AdvanceBandit, under the experiment's row
// lock, so that several servers update each bandit once). It returns the
// number of bandits updated; one bandit's failure is logged and the
// others go on.
func (a *App) UpdateBandits(ctx context.Context, now time.Time) (int, error) {
	keys, err := a.DB.RunningBandits(ctx)
	if err != nil {
		return 0, err
	}
	updated := 0
	for _, key := range keys {
		e, err := a.DB.FindExperimentByKey(ctx, key)
		if err != nil || len(e.Metrics.Primary) != 1 {
			continue
		}
		m, err := a.DB.FindMetricByKey(ctx, e.Metrics.Primary[0])
		if err != nil {
			a.log.Warn("bandit update: primary metric", "experiment", key, "err", err)
			continue
		}
		res, err := a.DB.AdvanceBandit(ctx, key, now.UTC(), m, func(e *flywheel.Experiment, cells []analysis.EpochStats) (store.BanditDecision, error) {
			return decideBandit(e, m, cells, now)
		})
		if err != nil {
			a.log.Warn("bandit update", "experiment", key, "err", err)
			continue
		}
		if res.Epoch > 0 {
			updated++
			a.log.Info("bandit weights updated", "experiment", key, "epoch", res.Epoch)
		}
	}
	if updated > 0 {
		if err := a.Live.Refresh(ctx); err != nil {
			a.log.Warn("live config refresh after bandit update", "err", err)
		}
	}
	return updated, nil
}

// decideBandit computes a bandit's next weights from its primary metric's
// statistics over every epoch: Thompson sampling's probabilities of being
// best (stats.ThompsonProbabilities) mixed with the floor
// (stats.FloorWeights). The random source is seeded with the experiment
// key and the update time, so an epoch's weights can be recomputed from
// its audit row. For a metric where lower is better the arms are ranked by
// the complement (conversions) or the negated values (means).
func decideBandit(e *flywheel.Experiment, m *flywheel.Metric, cells []analysis.EpochStats, now time.Time) (store.BanditDecision, error) {
	binary := flywheel.BanditMetricBinary(m.Type)
	idx := map[string]int{}
	for i, v := range e.Variants {
		idx[v.Key] = i
	}
	arms := make([]stats.Summary, len(e.Variants))
	for _, c := range cells {
		if i, ok := idx[c.Variant]; ok {
			arms[i] = arms[i].Merge(stats.Summary{N: c.N, Sum: c.Sum, SumSq: c.SumSq})
		}
	}
	ranked := arms
	if m.Direction == flywheel.DirectionDecrease {
		ranked = make([]stats.Summary, len(arms))
		for i, a := range arms {
			if binary {
				ranked[i] = stats.Summary{N: a.N, Sum: float64(a.N) - a.Sum, SumSq: float64(a.N) - a.Sum}
			} else {
				ranked[i] = stats.Summary{N: a.N, Sum: -a.Sum, SumSq: a.SumSq}
			}
		}
	}
	h := fnv.New64a()
	h.Write([]byte(e.Key))
	src := rand.NewPCG(h.Sum64(), uint64(now.UnixNano()))
	p, summary := stats.ThompsonProbabilities(ranked, binary, banditDraws, src)
	w := stats.FloorWeights(p, *e.Bandit.Floor)
	if w == nil {
		return store.BanditDecision{}, flywheel.Errorf(flywheel.CodeInternal, "bandit %q: no weights from %v with floor %v", e.Key, p, *e.Bandit.Floor)
	}
	d := store.BanditDecision{Weights: map[string]float64{}}
	post := map[string]map[string]any{}
	for i, v := range e.Variants {
		d.Weights[v.Key] = w[i]
		s := summary[i]
		mean, pm := arms[i].Mean(), s.PosteriorMean
		if m.Direction == flywheel.DirectionDecrease && !math.IsNaN(pm) {
			// The posterior of the complement or negation: back to the
			// metric's own scale.
			if binary {
				pm = 1 - s.PosteriorMean
			} else {
				pm = -s.PosteriorMean
			}
		}
		post[v.Key] = map[string]any{"n": s.N, "mean": finite(mean), "posterior_mean": finite(pm), "posterior_sd": finite(s.PosteriorSD), "prob_best": s.ProbBest}
	}
	raw, err := json.Marshal(post)
	if err != nil {
		return d, err
	}
	d.Posterior = raw
	return d, nil
}

// finite returns v, or nil (JSON null) for NaN and infinities.
func finite(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return v
}
