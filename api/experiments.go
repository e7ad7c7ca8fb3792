package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/assign"
)

// createExperimentRequest is the body of POST /v1/experiments. Traffic is a
// pointer so that an absent traffic means 1 (everyone) while 0 stays 0.
type createExperimentRequest struct {
	Key        string               `json:"key"`
	Name       string               `json:"name"`
	Hypothesis string               `json:"hypothesis"`
	UnitType   string               `json:"unit_type"`
	Variants   []flywheel.Variant   `json:"variants"`
	Traffic    *float64             `json:"traffic"`
	Layer      string               `json:"layer"`
	LayerRange *flywheel.LayerRange `json:"layer_range"`
	// LayerShare asks for a range of this fraction of the layer when no
	// layer_range is given (default: the largest free range).
	LayerShare float64             `json:"layer_share"`
	Salt       string              `json:"salt"`
	Targeting  json.RawMessage     `json:"targeting"`
	Overrides  map[string]string   `json:"overrides"`
	Metrics    flywheel.MetricRefs `json:"metrics"`
	Analysis   flywheel.Analysis   `json:"analysis"`
	// Allocation and Bandit: bandit experiments (bandit.go).
	Allocation flywheel.Allocation      `json:"allocation"`
	Bandit     *flywheel.BanditSettings `json:"bandit"`
}

// experiment returns the draft that req describes, normalised; Validate
// is left to the caller.
func (req *createExperimentRequest) experiment() (*flywheel.Experiment, error) {
	e := &flywheel.Experiment{
		Key: req.Key, Name: req.Name, Hypothesis: req.Hypothesis, UnitType: req.UnitType,
		Variants: req.Variants, Traffic: 1, Layer: req.Layer, LayerRange: req.LayerRange,
		Salt: req.Salt, Targeting: req.Targeting, Overrides: req.Overrides, Metrics: req.Metrics,
		Analysis: req.Analysis, Status: flywheel.StatusDraft,
		Allocation: req.Allocation, Bandit: req.Bandit,
	}
	if req.Traffic != nil {
		e.Traffic = *req.Traffic
	}
	if req.LayerShare < 0 || req.LayerShare > 1 {
		return nil, flywheel.Invalid("layer_share", "layer_share must be in [0, 1] (0 or absent: the largest free range of the layer)")
	}
	e.Normalize()
	return e, nil
}

func (s *Server) handleCreateExperiment(c *gin.Context) {
	var req createExperimentRequest
	if err := s.decodeJSON(c, &req); err != nil {
		s.writeError(c, err)
		return
	}
	e, err := req.experiment()
	if err != nil {
		s.writeError(c, err)
		return
	}
	if err := s.validateExperiment(c.Request.Context(), e); err != nil {
		s.writeError(c, err)
		return
	}
	out, err := s.deps.Store.CreateExperiment(c.Request.Context(), e, req.LayerShare, actor(c))
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.refreshLive(c)
	c.Header("Location", "/v1/experiments/"+out.Key)
	c.JSON(http.StatusCreated, out)
}

// validateExperiment checks e, including that its metrics exist and that
// the audiences its targeting references exist and are not archived.
func (s *Server) validateExperiment(ctx context.Context, e *flywheel.Experiment) error {
	known, err := s.deps.Store.MetricsExist(ctx, e.Metrics.Keys())
	if err != nil {
		return err
	}
	auds, err := s.audiencesFor(ctx, e.Targeting)
	if err != nil {
		return err
	}
	if err := e.ValidateWith(func(k string) bool { return known[k] }, auds); err != nil {
		return err
	}
	return s.validateBanditMetric(ctx, e)
}

// audiencesFor returns the audiences that are not archived when targeting
// references any (nil otherwise, sparing the query).
func (s *Server) audiencesFor(ctx context.Context, targeting json.RawMessage) (assign.Audiences, error) {
	if !bytes.Contains(targeting, []byte(assign.AudienceOperator)) {
		return nil, nil
	}
	return s.deps.Store.LiveAudiences(ctx)
}

// refreshLive makes this process's next assignment see a change at once.
// A failure is logged; the poller retries.
func (s *Server) refreshLive(c *gin.Context) {
	if err := s.deps.Live.Refresh(c.Request.Context()); err != nil {
		s.deps.Logger.WarnContext(c.Request.Context(), "live config refresh failed", "err", err, "request_id", requestID(c))
	}
}

func (s *Server) handleListExperiments(c *gin.Context) {
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
	page, err := s.deps.Store.ListExperiments(c.Request.Context(), flywheel.ExperimentFilter{Status: flywheel.Status(status), Limit: limit, Cursor: c.Query("cursor")})
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

func queryLimit(c *gin.Context) (int, error) {
	v := c.Query("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 500 {
		return 0, flywheel.Invalid("limit", "limit must be a whole number from 1 to 500")
	}
	return n, nil
}

func (s *Server) handleGetExperiment(c *gin.Context) {
	e, err := s.deps.Store.FindExperimentByKey(c.Request.Context(), c.Param("key"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, e)
}

func (s *Server) handlePatchExperiment(c *gin.Context) {
	var p flywheel.ExperimentPatch
	var err error
	if p.Clear, err = s.decodePatch(c, &p, flywheel.ExperimentNullable); err != nil {
		s.writeError(c, err)
		return
	}
	var known map[string]bool
	if p.Metrics != nil {
		if known, err = s.deps.Store.MetricsExist(c.Request.Context(), p.Metrics.Keys()); err != nil {
			s.writeError(c, err)
			return
		}
	}
	// A new targeting may reference live audiences only; an unchanged one
	// was valid when set and an audience in use cannot be archived, so it
	// resolves against them all. Read before the row lock is taken.
	var auds assign.Audiences
	if p.Targeting != nil {
		auds, err = s.audiencesFor(c.Request.Context(), p.Targeting)
	} else {
		auds, err = s.deps.Store.AllAudiences(c.Request.Context())
	}
	if err != nil {
		s.writeError(c, err)
		return
	}
	// The primary metric's type, for a bandit (metric types never change).
	types, err := s.metricTypes(c.Request.Context(), c.Param("key"), p)
	if err != nil {
		s.writeError(c, err)
		return
	}
	out, err := s.deps.Store.UpdateExperiment(c.Request.Context(), c.Param("key"), "update", actor(c), func(e *flywheel.Experiment) error {
		if err := p.Apply(e); err != nil {
			return err
		}
		if err := e.ValidateWith(func(k string) bool {
			if known == nil {
				return true // metrics unchanged: they were valid when set
			}
			return known[k]
		}, auds); err != nil {
			return err
		}
		return e.ValidateBanditMetric(func(k string) (flywheel.MetricType, bool) { t, ok := types[k]; return t, ok })
	})
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.refreshLive(c)
	c.JSON(http.StatusOK, out)
}

// lifecycle is what experiments and holdouts share: they start, stop and
// are archived.
type lifecycle interface {
	Start(now time.Time) error
	Stop(now time.Time) error
	Archive(now time.Time) error
}

// transition returns the change that action ("start", "stop" or "archive")
// makes at now, for handleTransition and handleHoldoutTransition.
func transition[T lifecycle](action string, now time.Time) func(T) error {
	return func(x T) error {
		switch action {
		case "start":
			return x.Start(now)
		case "stop":
			return x.Stop(now)
		default:
			return x.Archive(now)
		}
	}
}

// handleTransition serves start, stop and archive.
func (s *Server) handleTransition(action string) gin.HandlerFunc {
	return func(c *gin.Context) {
		now := s.deps.Clock().UTC()
		out, err := s.deps.Store.UpdateExperiment(c.Request.Context(), c.Param("key"), action, actor(c),
			transition[*flywheel.Experiment](action, now))
		if err != nil {
			s.writeError(c, err)
			return
		}
		s.refreshLive(c)
		c.JSON(http.StatusOK, out)
	}
}

// handleHistory answers GET .../{key}/history for one audit log
// (experiments, audiences, holdouts), read by read.
func (s *Server) handleHistory(read func(ctx context.Context, key string, limit int, cursor string) (flywheel.Page[flywheel.HistoryEntry], error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		limit, err := queryLimit(c)
		if err != nil {
			s.writeError(c, err)
			return
		}
		page, err := read(c.Request.Context(), c.Param("key"), limit, c.Query("cursor"))
		if err != nil {
			s.writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, page)
	}
}
