package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/assign"
)

// handleExperimentEpochs serves a bandit's weight epochs.
func (s *Server) handleExperimentEpochs(c *gin.Context) {
	eps, err := s.deps.Store.BanditEpochs(c.Request.Context(), c.Param("key"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"epochs": eps})
}

// stickyBandit keeps a bandit's enrolled unit in the arm of its first
// recorded exposure: the bucketing follows the current weights, which move
// at each update, and would otherwise move enrolled units between arms,
// or out of the experiment when traffic is below 1 (the variants' bucket
// ranges move, and a unit can land in the gap). It costs one primary-key
// lookup, for bandit experiments only, and only for units that the
// bucketing enrolls or leaves out by traffic (targeting, layers, overrides
// and opt-outs still decide first). When the lookup fails (the database is away), the unit
// gets the arm of the current weights, as an SDK process that never saw it
// would, and the failure is logged: assignment keeps answering.
func (s *Server) stickyBandit(c *gin.Context, e *flywheel.Experiment, storedID string, a *assignment) {
	if e.Allocation != flywheel.AllocationBandit || (a.Reason != assign.ReasonBucket && a.Reason != assign.ReasonTraffic) {
		return
	}
	v, ok, err := s.deps.Store.ExposedVariant(c.Request.Context(), e.Key, storedID)
	if err != nil {
		s.deps.Logger.WarnContext(c.Request.Context(), "bandit sticky arm lookup failed; answering by the current weights", "err", err, "request_id", requestID(c))
		return
	}
	if !ok || (a.Variant != nil && v == *a.Variant) {
		return
	}
	for _, x := range e.Variants {
		if x.Key == v {
			a.Variant, a.Payload, a.Enrolled, a.Reason = &v, x.Payload, true, assign.ReasonBucket
			return
		}
	}
	// A variant the experiment no longer has: the current arm.
}

// validateBanditMetric checks that a bandit's primary metric is of a type
// a bandit can optimise (other experiments pass).
func (s *Server) validateBanditMetric(ctx context.Context, e *flywheel.Experiment) error {
	if e.Allocation != flywheel.AllocationBandit || len(e.Metrics.Primary) != 1 {
		return nil
	}
	ms, err := s.deps.Store.FindMetricsByKeys(ctx, e.Metrics.Primary)
	if err != nil {
		return err
	}
	types := map[string]flywheel.MetricType{}
	for _, m := range ms {
		types[m.Key] = m.Type
	}
	return e.ValidateBanditMetric(func(k string) (flywheel.MetricType, bool) { t, ok := types[k]; return t, ok })
}

// metricTypes returns the types of the metrics a patched experiment may
// name as primary: the patch's, or the stored experiment's.
func (s *Server) metricTypes(ctx context.Context, key string, p flywheel.ExperimentPatch) (map[string]flywheel.MetricType, error) {
	keys := []string{}
	if p.Metrics != nil {
		keys = p.Metrics.Primary
	} else if p.Allocation != nil {
		e, err := s.deps.Store.FindExperimentByKey(ctx, key)
		if err != nil {
			return nil, err
		}
		keys = e.Metrics.Primary
	}
	types := map[string]flywheel.MetricType{}
	if len(keys) == 0 {
		return types, nil
	}
	ms, err := s.deps.Store.FindMetricsByKeys(ctx, keys)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		types[m.Key] = m.Type
	}
	return types, nil
}
