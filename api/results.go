package api

import (
	"context"
	"net/http"
	"regexp"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
)

// Results is the aggregation the results endpoint reads.
type Results interface {
	ResultInput(ctx context.Context, e *flywheel.Experiment, metrics []flywheel.Metric, q analysis.Query) (analysis.Input, error)
	SaveSequential(ctx context.Context, experiment string, states []analysis.SequentialState) error
	TimeseriesInput(ctx context.Context, e *flywheel.Experiment, m flywheel.Metric, q analysis.Query) ([]analysis.Day, analysis.Freshness, error)
	UpliftInput(ctx context.Context, e *flywheel.Experiment, m flywheel.Metric, by []string, q analysis.Query) (analysis.UpliftInput, error)
	ExposureAttributes(ctx context.Context, experiment string, sample int) ([]flywheel.ExposureAttribute, int64, error)
}

var segmentPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// attributesSample is how many units' first exposures GET
// /v1/experiments/{key}/attributes reads.
const attributesSample = 10_000

// exposureAttributes is the answer of GET /v1/experiments/{key}/attributes.
type exposureAttributes struct {
	Experiment   string                       `json:"experiment"`
	SampledUnits int64                        `json:"sampled_units"`
	Attributes   []flywheel.ExposureAttribute `json:"attributes"`
}

// handleAttributes lists the attributes an experiment's exposures carry,
// most common first, from a sample of its units: what ?segment= (and
// uplift's by=) can break its results down by. Names that ?segment= cannot
// take are left out.
func (s *Server) handleAttributes(c *gin.Context) {
	ctx := c.Request.Context()
	e, err := s.deps.Store.FindExperimentByKey(ctx, c.Param("key"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	attrs, read, err := s.deps.Results.ExposureAttributes(ctx, e.Key, attributesSample)
	if err != nil {
		s.writeError(c, err)
		return
	}
	out := exposureAttributes{Experiment: e.Key, SampledUnits: read, Attributes: []flywheel.ExposureAttribute{}}
	for _, a := range attrs {
		if segmentPattern.MatchString(a.Name) {
			out.Attributes = append(out.Attributes, a)
		}
	}
	c.JSON(http.StatusOK, out)
}

// handleResults computes the results document of an experiment: sufficient
// statistics from the database, then analysis (pure).
func (s *Server) handleResults(c *gin.Context) {
	e, err := s.deps.Store.FindExperimentByKey(c.Request.Context(), c.Param("key"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	res, err := s.results(c, e)
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, res)
}

// results computes the results document of e (an experiment, or a
// holdout's analysed experiment) with the request's options.
func (s *Server) results(c *gin.Context, e *flywheel.Experiment) (*analysis.Results, error) {
	ctx := c.Request.Context()
	opts := analysis.Options{MetricFilter: c.Query("metric"), Segment: c.Query("segment"), Adjustment: analysis.Adjustment(c.Query("adjustment"))}
	var err error
	if opts.Alpha, err = queryAlpha(c); err != nil {
		return nil, err
	}
	if opts.Segment != "" && !segmentPattern.MatchString(opts.Segment) {
		return nil, flywheel.Invalid("segment", "segment must name an exposure attribute (^[A-Za-z0-9_.-]{1,64}$)")
	}
	if err := analysis.ValidateOptions(*e, opts); err != nil {
		return nil, err
	}
	metrics, err := s.deps.Store.FindMetricsByKeys(ctx, e.Metrics.Keys())
	if err != nil {
		return nil, err
	}
	in, err := s.deps.Results.ResultInput(ctx, e, metrics, analysis.Query{Segment: opts.Segment, Now: s.deps.Clock().UTC(), Overrides: s.storedOverrides(e)})
	if err != nil {
		return nil, err
	}
	res := analysis.Analyze(in, opts)
	// A sequential test's state advances with each look at the full
	// document at the usual alpha (see analysis.SequentialState).
	if len(res.Sequential) > 0 && opts.MetricFilter == "" && opts.Segment == "" && (opts.Alpha == 0 || opts.Alpha == analysis.DefaultAlpha) {
		if err := s.deps.Results.SaveSequential(ctx, e.Key, res.Sequential); err != nil {
			return nil, err
		}
	}
	return &res, nil
}

// handlePower answers a sample-size or MDE question.
func (s *Server) handlePower(c *gin.Context) {
	var req analysis.PowerRequest
	if err := s.decodeJSON(c, &req); err != nil {
		s.writeError(c, err)
		return
	}
	ans, err := analysis.Power(req)
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, ans)
}

// handleTimeseries serves the cumulative estimate and interval of one
// metric per day (?metric=, default the first primary metric).
func (s *Server) handleTimeseries(c *gin.Context) {
	e, err := s.deps.Store.FindExperimentByKey(c.Request.Context(), c.Param("key"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	ts, err := s.timeseries(c, e)
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, ts)
}

// timeseries computes the timeseries document of e (an experiment, or a
// holdout's analysed experiment).
func (s *Server) timeseries(c *gin.Context, e *flywheel.Experiment) (any, error) {
	ctx := c.Request.Context()
	opts := analysis.Options{Adjustment: analysis.Adjustment(c.Query("adjustment"))}
	var err error
	if opts.Alpha, err = queryAlpha(c); err != nil {
		return nil, err
	}
	key := c.Query("metric")
	if key == "" {
		keys := e.Metrics.Keys()
		if len(keys) == 0 {
			return nil, flywheel.Invalid("metric", "%q names no metric", e.Key)
		}
		key = keys[0]
	}
	opts.MetricFilter = key
	if err := analysis.ValidateOptions(*e, opts); err != nil {
		return nil, err
	}
	metrics, err := s.deps.Store.FindMetricsByKeys(ctx, []string{key})
	if err != nil {
		return nil, err
	}
	if len(metrics) != 1 {
		return nil, &flywheel.Error{Code: flywheel.CodeNotFound, Field: "metric", Message: "metric " + strconv.Quote(key) + " is not defined"}
	}
	days, fresh, err := s.deps.Results.TimeseriesInput(ctx, e, metrics[0], analysis.Query{Now: s.deps.Clock().UTC(), Overrides: s.storedOverrides(e)})
	if err != nil {
		return nil, err
	}
	return analysis.Timeseries(*e, metrics[0], days, fresh, opts), nil
}

// storedOverrides returns the experiment's overridden unit ids in their
// stored (possibly pseudonymised) form.
func (s *Server) storedOverrides(e *flywheel.Experiment) []string {
	out := make([]string, 0, len(e.Overrides))
	for id := range e.Overrides {
		out = append(out, s.deps.Validator.IDs.ID(id))
	}
	return out
}

// queryAlpha reads ?alpha= (0 when absent: the default); analysis checks
// its range.
func queryAlpha(c *gin.Context) (float64, error) {
	v := c.Query("alpha")
	if v == "" {
		return 0, nil
	}
	a, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, flywheel.Invalid("alpha", "alpha must be a number in (0, 0.5], e.g. 0.05")
	}
	return a, nil
}
