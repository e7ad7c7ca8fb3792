package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/assign"
)

var unitTypePattern = regexp.MustCompile(`^[a-z_]{1,32}$`)

// assignRequest is the body of POST /v1/assign. Experiments is a pointer:
// omitted means every running experiment of the unit type, [] means none.
type assignRequest struct {
	UnitType    string         `json:"unit_type"`
	UnitID      string         `json:"unit_id"`
	Attributes  map[string]any `json:"attributes"`
	Experiments *[]string      `json:"experiments"`
	LogExposure bool           `json:"log_exposure"`
}

// assignment is one answer of POST /v1/assign; variant and payload are null
// when the unit is not enrolled.
type assignment struct {
	Experiment string          `json:"experiment"`
	Variant    *string         `json:"variant"`
	Enrolled   bool            `json:"enrolled"`
	Reason     assign.Reason   `json:"reason"`
	Payload    json.RawMessage `json:"payload"`
}

func (s *Server) handleAssign(c *gin.Context) {
	var req assignRequest
	if err := s.decodeJSON(c, &req); err != nil {
		s.writeError(c, err)
		return
	}
	if !unitTypePattern.MatchString(req.UnitType) {
		s.writeError(c, flywheel.Invalid("unit_type", "unit_type must match ^[a-z_]{1,32}$"))
		return
	}
	if req.UnitID == "" || len(req.UnitID) > 256 {
		s.writeError(c, flywheel.Invalid("unit_id", "unit_id must be 1 to 256 bytes"))
		return
	}
	if req.Experiments != nil && len(*req.Experiments) > flywheel.MaxLiveExperiments {
		// As many as there may be experiments: the answer's size is bounded.
		s.writeError(c, flywheel.Invalid("experiments", "experiments may name at most %d experiments, got %d", flywheel.MaxLiveExperiments, len(*req.Experiments)))
		return
	}
	st := s.deps.Live.Current()
	if st == nil {
		s.writeError(c, flywheel.Errorf(flywheel.CodeUnavailable, "configuration not loaded yet; retry"))
		return
	}
	keys := st.Running()
	if req.Experiments != nil {
		keys = *req.Experiments
	}
	storedID := s.deps.Validator.IDs.ID(req.UnitID)
	optedOut := s.deps.OptOuts.Has(req.UnitType, storedID)
	out := make([]assignment, 0, len(keys))
	for i, key := range keys {
		e, known := st.Experiment(key)
		if !known {
			// Unknown or archived: answered as the SDK answers it, so that an
			// app gets the same decision from either (docs/api.md).
			out = append(out, assignment{Experiment: key, Reason: assign.ReasonNotRunning})
			continue
		}
		if e.UnitType != req.UnitType {
			if req.Experiments == nil {
				continue // only the experiments that randomise on this unit type
			}
			s.writeError(c, flywheel.Invalid(fmt.Sprintf("experiments[%d]", i), "experiment %q randomises on %s ids, not %s", key, e.UnitType, req.UnitType))
			return
		}
		if optedOut && e.Status == flywheel.StatusRunning { // as the SDK: not running comes first
			out = append(out, assignment{Experiment: key, Reason: assign.ReasonOptedOut})
			continue
		}
		r := st.Snapshot.Assign(key, req.UnitID, req.Attributes)
		a := assignment{Experiment: key, Enrolled: r.Enrolled, Reason: r.Reason}
		if r.Enrolled {
			v := r.Variant
			a.Variant, a.Payload = &v, r.Payload
		}
		s.stickyBandit(c, e, storedID, &a)
		out = append(out, a)
	}
	if req.LogExposure {
		if err := s.logExposures(c, req, storedID, out); err != nil {
			s.writeError(c, err)
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"assignments": out})
}

// logExposures records an exposure for each enrolled assignment through
// the ingestion path, and returns once they are committed.
func (s *Server) logExposures(c *gin.Context, req assignRequest, storedID string, as []assignment) error {
	var attrs json.RawMessage
	if len(req.Attributes) > 0 {
		raw, err := json.Marshal(req.Attributes)
		if err != nil {
			return flywheel.Invalid("attributes", "attributes cannot be encoded: %v", err)
		}
		if bytes.Contains(raw, []byte(`\u0000`)) {
			return flywheel.Invalid("attributes", "attributes must not contain NUL characters")
		}
		if len(raw) > 16<<10 {
			return flywheel.Invalid("attributes", "attributes must be at most 16 KiB of JSON to be logged with an exposure")
		}
		attrs = raw
	}
	now := s.deps.Clock().UTC()
	var events []flywheel.Event
	for _, a := range as {
		if !a.Enrolled {
			continue
		}
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		events = append(events, flywheel.Event{
			ID: id, Type: flywheel.EventExposure, UnitType: req.UnitType, UnitID: storedID,
			Timestamp: now, ReceivedAt: now, Experiment: a.Experiment, Variant: *a.Variant, Attributes: attrs,
		})
	}
	_, err := s.deps.Ingest.Submit(c.Request.Context(), events)
	return err
}

// handleSDKConfig serves the compiled configuration with its ETag.
func (s *Server) handleSDKConfig(c *gin.Context) {
	st := s.deps.Live.Current()
	if st == nil {
		s.writeError(c, flywheel.Errorf(flywheel.CodeUnavailable, "configuration not loaded yet; retry"))
		return
	}
	c.Header("ETag", st.ETag)
	c.Header("Cache-Control", "no-cache")
	if inm := c.GetHeader("If-None-Match"); inm != "" && (inm == st.ETag || inm == "W/"+st.ETag || inm == "*") {
		c.Status(http.StatusNotModified)
		return
	}
	c.Data(http.StatusOK, "application/json", st.SDKConfig)
}
