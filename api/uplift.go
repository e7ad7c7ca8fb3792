package api

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
)

// handleUplift answers "who responds?": the effect of each variant per
// value of the exposure attributes of by=, an interaction test per
// attribute, and a cross-fitted targeting policy (?metric=, default the
// first primary metric; ?alpha=; ?min_units=).
func (s *Server) handleUplift(c *gin.Context) {
	ctx := c.Request.Context()
	e, err := s.deps.Store.FindExperimentByKey(ctx, c.Param("key"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	by, err := analysis.ParseUpliftBy(c.Query("by"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	var opts analysis.UpliftOptions
	if opts.Alpha, err = queryAlpha(c); err != nil {
		s.writeError(c, err)
		return
	}
	if v := c.Query("min_units"); v != "" {
		if opts.MinUnits, err = strconv.ParseInt(v, 10, 64); err != nil || opts.MinUnits == 0 {
			s.writeError(c, flywheel.Invalid("min_units", "min_units must be an integer in [2, 1000000]"))
			return
		}
	}
	key := c.Query("metric")
	if key == "" {
		keys := e.Metrics.Keys()
		if len(keys) == 0 {
			s.writeError(c, flywheel.Invalid("metric", "experiment %q names no metric", e.Key))
			return
		}
		key = keys[0]
	}
	metrics, err := s.deps.Store.FindMetricsByKeys(ctx, []string{key})
	if err != nil {
		s.writeError(c, err)
		return
	}
	m := flywheel.Metric{Key: key}
	if len(metrics) == 1 {
		m = metrics[0]
	}
	if err := analysis.ValidateUplift(*e, m, opts); err != nil {
		s.writeError(c, err)
		return
	}
	in, err := s.deps.Results.UpliftInput(ctx, e, m, by, analysis.Query{Now: s.deps.Clock().UTC(), Overrides: s.storedOverrides(e)})
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, analysis.AnalyzeUplift(in, opts))
}
