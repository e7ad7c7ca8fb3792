package flywheel

import (
	"context"
	"encoding/json"
	"math"
	"time"
)

// Allocation is how an experiment splits traffic between its variants:
// fixed weights, or a bandit that moves the weights towards the arms that
// do best on the primary metric (Thompson sampling).
type Allocation string

// The allocations.
const (
	AllocationFixed  Allocation = "fixed"
	AllocationBandit Allocation = "bandit"
)

// Bandit defaults and bounds (docs/api.md, Bandits).
const (
	DefaultBanditFloor  = 0.05
	DefaultBanditPeriod = "1h"
	DefaultBanditBurnIn = "24h"
	MinBanditPeriod     = time.Minute
	MaxBanditPeriod     = 7 * 24 * time.Hour
	MaxBanditBurnIn     = 90 * 24 * time.Hour
)

// BanditSettings tunes a bandit experiment.
type BanditSettings struct {
	// Floor is the least share of traffic every arm keeps, in (0, 1/arms]:
	// it keeps exploring and keeps the estimate valid. Default 0.05.
	Floor *float64 `json:"floor"`
	// Period is how often the weights are recomputed, a Go duration ("1h",
	// "30m"); at least 1m, at most 168h. Default 1h.
	Period string `json:"period"`
	// BurnIn is how long the experiment runs at its initial weights before
	// the first update, so that delayed conversions have time to arrive;
	// at most 2160h. Default 24h.
	BurnIn string `json:"burn_in"`
}

// Durations returns the parsed period and burn-in; valid settings only.
func (b *BanditSettings) Durations() (period, burnIn time.Duration) {
	period, _ = time.ParseDuration(b.Period)
	burnIn, _ = time.ParseDuration(b.BurnIn)
	return period, burnIn
}

// normalizeBandit fills the allocation and bandit defaults.
func (e *Experiment) normalizeBandit() {
	if e.Allocation == "" {
		e.Allocation = AllocationFixed
	}
	if e.Allocation != AllocationBandit {
		return
	}
	if e.Bandit == nil {
		e.Bandit = &BanditSettings{}
	}
	if e.Bandit.Floor == nil {
		f := DefaultBanditFloor
		if n := len(e.Variants); n > 0 && f*float64(n) > 1 {
			f = 1 / float64(n)
		}
		e.Bandit.Floor = &f
	}
	if e.Bandit.Period == "" {
		e.Bandit.Period = DefaultBanditPeriod
	}
	if e.Bandit.BurnIn == "" {
		e.Bandit.BurnIn = DefaultBanditBurnIn
	}
}

// validateBandit checks the allocation and, for a bandit, its settings and
// what it cannot be combined with.
func validateBandit(p *Problems, e *Experiment) {
	switch e.Allocation {
	case AllocationFixed:
		if e.Bandit != nil {
			p.Add("bandit", "bandit settings need \"allocation\": \"bandit\"")
		}
		return
	case AllocationBandit:
	default:
		p.Add("allocation", "allocation must be fixed or bandit")
		return
	}
	b := e.Bandit
	if b == nil { // Normalize fills it; a caller that skipped it
		p.Add("bandit", "a bandit experiment needs its bandit settings")
		return
	}
	k := float64(len(e.Variants))
	if f := b.Floor; f == nil || math.IsNaN(*f) || *f <= 0 || (k > 0 && *f*k > 1+1e-12) {
		p.Add("bandit.floor", "floor must be in (0, 1/variants]: floor × %d variants must be at most 1 and every arm must keep some traffic", len(e.Variants))
	}
	if d, err := time.ParseDuration(b.Period); err != nil || d < MinBanditPeriod || d > MaxBanditPeriod {
		p.Add("bandit.period", "period must be a duration from %s to %s, e.g. \"1h\"", MinBanditPeriod, MaxBanditPeriod)
	}
	if d, err := time.ParseDuration(b.BurnIn); err != nil || d < 0 || d > MaxBanditBurnIn {
		p.Add("bandit.burn_in", "burn_in must be a duration from 0s to %s, e.g. \"24h\"", MaxBanditBurnIn)
	}
	if len(e.Metrics.Primary) != 1 {
		p.Add("metrics.primary", "a bandit optimises exactly one primary metric, got %d", len(e.Metrics.Primary))
	}
	if e.Analysis == AnalysisSequential {
		p.Add("analysis", "a bandit experiment cannot use the sequential analysis: its always-valid test assumes fixed weights; use fixed (the results stratify by weight epoch)")
	}
	if len(e.Overrides) > 0 {
		p.Add("overrides", "a bandit experiment cannot have overrides: forced units would be counted by the bandit's weights but not analysed")
	}
}

// BanditMetricSupported reports whether a bandit can optimise a metric of
// type t: conversion and retention (Beta posteriors), mean and count
// (normal approximation). Ratio metrics are not supported.
func BanditMetricSupported(t MetricType) bool {
	switch t {
	case MetricConversion, MetricRetention, MetricMean, MetricCount:
		return true
	}
	return false
}

// BanditMetricBinary reports whether a bandit models metric type t with a
// Beta posterior (a 0/1 value per unit).
func BanditMetricBinary(t MetricType) bool {
	return t == MetricConversion || t == MetricRetention
}

// ValidateBanditMetric checks, for a bandit experiment, that its primary
// metric is of a supported type; metricType returns a defined metric's
// type. Other experiments pass.
func (e *Experiment) ValidateBanditMetric(metricType func(key string) (MetricType, bool)) error {
	if e.Allocation != AllocationBandit || len(e.Metrics.Primary) != 1 {
		return nil
	}
	t, ok := metricType(e.Metrics.Primary[0])
	if ok && !BanditMetricSupported(t) {
		return Invalid("metrics.primary[0]", "a bandit cannot optimise the %s metric %q: use a conversion, retention, mean or count metric", t, e.Metrics.Primary[0])
	}
	return nil
}

// BanditEpoch is one period of a bandit experiment with constant weights.
// Epoch 0 starts when the experiment starts, at its initial weights; each
// update starts the next one. A unit belongs to the epoch in which it was
// first exposed.
type BanditEpoch struct {
	Epoch     int       `json:"epoch"`
	StartedAt time.Time `json:"started_at"`
	// Weights are the variants' weights, by variant key.
	Weights map[string]float64 `json:"weights"`
	// Posterior is the posterior summary per variant that gave the
	// weights (absent for epoch 0): units, mean, posterior mean and SD, and
	// the probability of being best before the floor.
	Posterior json.RawMessage `json:"posterior,omitempty"`
	// Revision is the configuration revision that carried the weights.
	Revision int64 `json:"revision"`
}

// BanditStore keeps bandit epochs.
type BanditStore interface {
	// BanditEpochs returns an experiment's epochs, oldest first.
	BanditEpochs(ctx context.Context, key string) ([]BanditEpoch, error)
	// ExposedVariant returns the variant of a unit's first recorded
	// exposure to an experiment (one primary-key lookup), ok false when
	// the unit has none. unitID is the stored (pseudonymised) id.
	ExposedVariant(ctx context.Context, experiment, unitID string) (variant string, ok bool, err error)
	// ExposedVariants is ExposedVariant for many units at once (campaign
	// lists): the variants by unit id, units never exposed absent.
	ExposedVariants(ctx context.Context, experiment string, unitIDs []string) (map[string]string, error)
}
