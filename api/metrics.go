package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
)

// createMetricRequest is the body of POST /v1/metrics.
type createMetricRequest struct {
	Key         string              `json:"key"`
	Name        string              `json:"name"`
	Description string              `json:"description"`
	Type        flywheel.MetricType `json:"type"`
	Event       string              `json:"event"`
	Numerator   string              `json:"numerator"`
	Denominator string              `json:"denominator"`
	WindowHours int                 `json:"window_hours"`
	FromHours   int                 `json:"from_hours"`
	ToHours     int                 `json:"to_hours"`
	CUPEDHours  *int                `json:"cuped_hours"` // absent: the default; 0: CUPED off
	Direction   flywheel.Direction  `json:"direction"`
	Cap         *flywheel.Cap       `json:"cap"`
}

// metric returns the metric that req describes, normalised, with the
// CUPED default when cuped_hours is absent; Validate is left to the caller.
func (req *createMetricRequest) metric() *flywheel.Metric {
	m := &flywheel.Metric{
		Key: req.Key, Name: req.Name, Description: req.Description, Type: req.Type, Event: req.Event,
		Numerator: req.Numerator, Denominator: req.Denominator, WindowHours: req.WindowHours,
		FromHours: req.FromHours, ToHours: req.ToHours, CUPEDHours: flywheel.DefaultCUPEDHours,
		Direction: req.Direction, Cap: req.Cap,
	}
	if req.CUPEDHours != nil {
		m.CUPEDHours = *req.CUPEDHours
	}
	m.Normalize()
	return m
}

func (s *Server) handleCreateMetric(c *gin.Context) {
	var req createMetricRequest
	if err := s.decodeJSON(c, &req); err != nil {
		s.writeError(c, err)
		return
	}
	m := req.metric()
	if err := m.Validate(); err != nil {
		s.writeError(c, err)
		return
	}
	out, err := s.deps.Store.CreateMetric(c.Request.Context(), m)
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.Header("Location", "/v1/metrics/"+out.Key)
	c.JSON(http.StatusCreated, out)
}

func (s *Server) handleListMetrics(c *gin.Context) {
	limit, err := queryLimit(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	page, err := s.deps.Store.ListMetrics(c.Request.Context(), limit, c.Query("cursor"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

func (s *Server) handleGetMetric(c *gin.Context) {
	m, err := s.deps.Store.FindMetricByKey(c.Request.Context(), c.Param("key"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, m)
}

func (s *Server) handlePatchMetric(c *gin.Context) {
	var p flywheel.MetricPatch
	var err error
	if p.Clear, err = s.decodePatch(c, &p, flywheel.MetricNullable); err != nil {
		s.writeError(c, err)
		return
	}
	out, err := s.deps.Store.UpdateMetric(c.Request.Context(), c.Param("key"), func(m *flywheel.Metric) error {
		p.Apply(m)
		return m.Validate()
	})
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, out)
}
