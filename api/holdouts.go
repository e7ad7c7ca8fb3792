package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
)

// createHoldoutRequest is the body of POST /v1/holdouts.
type createHoldoutRequest struct {
	Key         string              `json:"key"`
	Name        string              `json:"name"`
	Description string              `json:"description"`
	UnitType    string              `json:"unit_type"`
	Fraction    float64             `json:"fraction"`
	Experiments []string            `json:"experiments"`
	Layers      []string            `json:"layers"`
	Metrics     flywheel.MetricRefs `json:"metrics"`
}

// metricExists reads which of keys are defined metrics, for validation.
func (s *Server) metricExists(c *gin.Context, m flywheel.MetricRefs) (func(string) bool, error) {
	known, err := s.deps.Store.MetricsExist(c.Request.Context(), m.Keys())
	if err != nil {
		return nil, err
	}
	return func(k string) bool { return known[k] }, nil
}

func (s *Server) handleCreateHoldout(c *gin.Context) {
	var req createHoldoutRequest
	if err := s.decodeJSON(c, &req); err != nil {
		s.writeError(c, err)
		return
	}
	h := &flywheel.Holdout{Key: req.Key, Name: req.Name, Description: req.Description, UnitType: req.UnitType,
		Fraction: req.Fraction, Experiments: req.Experiments, Layers: req.Layers, Metrics: req.Metrics, Status: flywheel.StatusDraft}
	h.Normalize()
	exists, err := s.metricExists(c, h.Metrics)
	if err != nil {
		s.writeError(c, err)
		return
	}
	// The store validates h in its transaction, against the experiments
	// committed then; a refusal rolls everything back.
	out, err := s.deps.Store.CreateHoldout(c.Request.Context(), h, exists, actor(c))
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.refreshLive(c)
	c.Header("Location", "/v1/holdouts/"+out.Key)
	c.JSON(http.StatusCreated, out)
}

func (s *Server) handleListHoldouts(c *gin.Context) {
	status := c.Query("status")
	if status != "" && status != "all" && !flywheel.Status(status).Valid() {
		s.writeError(c, flywheel.Invalid("status", "status must be draft, running, stopped, archived or all"))
		return
	}
	limit, err := queryLimit(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	page, err := s.deps.Store.ListHoldouts(c.Request.Context(), flywheel.HoldoutFilter{Status: flywheel.Status(status), Limit: limit, Cursor: c.Query("cursor")})
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

func (s *Server) handleGetHoldout(c *gin.Context) {
	h, err := s.deps.Store.FindHoldoutByKey(c.Request.Context(), c.Param("key"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, h)
}

func (s *Server) handlePatchHoldout(c *gin.Context) {
	var p flywheel.HoldoutPatch
	if _, err := s.decodePatch(c, &p, nil); err != nil {
		s.writeError(c, err)
		return
	}
	exists := func(string) bool { return true } // metrics unchanged: they were valid when set
	if p.Metrics != nil {
		var err error
		if exists, err = s.metricExists(c, *p.Metrics); err != nil {
			s.writeError(c, err)
			return
		}
	}
	out, err := s.deps.Store.UpdateHoldout(c.Request.Context(), c.Param("key"), "update", actor(c), p.Apply, exists)
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.refreshLive(c)
	c.JSON(http.StatusOK, out)
}

// handleHoldoutTransition serves start, stop and archive.
func (s *Server) handleHoldoutTransition(action string) gin.HandlerFunc {
	return func(c *gin.Context) {
		now := s.deps.Clock().UTC()
		out, err := s.deps.Store.UpdateHoldout(c.Request.Context(), c.Param("key"), action, actor(c),
			transition[*flywheel.Holdout](action, now), func(string) bool { return true })
		if err != nil {
			s.writeError(c, err)
			return
		}
		s.refreshLive(c)
		c.JSON(http.StatusOK, out)
	}
}

// holdoutResults is the results document of a holdout: an experiment's,
// on the arms "holdout" (the control) and "exposed", with the holdout's
// key beside the analysis key ("holdout:" + key) in "experiment".
type holdoutResults struct {
	Holdout string `json:"holdout"`
	*analysis.Results
}

// handleHoldoutResults compares the units held out with the units exposed
// to the program, as experiment results compare variants.
func (s *Server) handleHoldoutResults(c *gin.Context) {
	h, err := s.deps.Store.FindHoldoutByKey(c.Request.Context(), c.Param("key"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	res, err := s.results(c, h.Analyzed())
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, holdoutResults{Holdout: h.Key, Results: res})
}

func (s *Server) handleHoldoutTimeseries(c *gin.Context) {
	h, err := s.deps.Store.FindHoldoutByKey(c.Request.Context(), c.Param("key"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	ts, err := s.timeseries(c, h.Analyzed())
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, ts)
}
