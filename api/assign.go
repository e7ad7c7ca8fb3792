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
	// IDs are the unit's ids of other unit types (e.g. {"customer": "c-42"}
	// on a device request): a holdout on that unit type decides by them,
	// so that a customer's devices share the customer's holdout status.
	IDs map[string]string `json:"ids"`
}

// assignment is one answer of POST /v1/assign; variant and payload are null
// when the unit is not enrolled.
type assignment struct {
	Experiment string          `json:"experiment"`
	Variant    *string         `json:"variant"`
	Enrolled   bool            `json:"enrolled"`
	Reason     assign.Reason   `json:"reason"`
	Payload    json.RawMessage `json:"payload"`
	// Holdout names the holdout that keeps the unit out (reason
	// "holdout"); variant and payload are then the control's.
	Holdout string `json:"holdout,omitempty"`
}

// holdoutArm is a holdout exposure to record: the unit (by its id of the
// holdout's unit type) in arm "holdout" or "exposed" of the holdout.
type holdoutArm struct {
	h   *assign.CompiledHoldout
	arm string
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
	ids, err := unitIDs(req)
	if err != nil {
		s.writeError(c, err)
		return
	}
	storedID := s.deps.Validator.IDs.ID(req.UnitID)
	optedOut := s.deps.OptOuts.Has(req.UnitType, storedID)
	out := make([]assignment, 0, len(keys))
	var arms []holdoutArm
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
		r := st.Snapshot.AssignUnit(key, ids, req.Attributes)
		a := assignment{Experiment: key, Enrolled: r.Enrolled, Reason: r.Reason, Holdout: r.Holdout}
		if r.Variant != "" {
			v := r.Variant
			a.Variant, a.Payload = &v, r.Payload
		}
		s.stickyBandit(c, e, storedID, &a)
		out = append(out, a)
		if req.LogExposure {
			arms = appendHoldoutArms(arms, st.Snapshot, key, r)
		}
	}
	if req.LogExposure {
		if err := s.logExposures(c, req, storedID, out, ids, arms); err != nil {
			s.writeError(c, err)
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"assignments": out})
}

// unitIDs returns the unit's ids by unit type: the request's unit_id
// under its unit_type, and ids, checked.
func unitIDs(req assignRequest) (map[string]string, error) {
	if len(req.IDs) > 16 {
		return nil, flywheel.Invalid("ids", "ids may hold at most 16 unit types, got %d", len(req.IDs))
	}
	ids := make(map[string]string, len(req.IDs)+1)
	for t, id := range req.IDs {
		field := "ids." + t
		switch {
		case !unitTypePattern.MatchString(t):
			return nil, flywheel.Invalid("ids", "ids are keyed by unit type (^[a-z_]{1,32}$), not %q", t)
		case id == "" || len(id) > 256:
			return nil, flywheel.Invalid(field, "%s must be 1 to 256 bytes", field)
		case t == req.UnitType && id != req.UnitID:
			return nil, flywheel.Invalid(field, "%s differs from unit_id; give the unit's %s id once, as unit_id", field, t)
		}
		ids[t] = id
	}
	ids[req.UnitType] = req.UnitID
	return ids, nil
}

// appendHoldoutArms adds the holdout exposures an assignment makes: a
// held-out unit that would have been enrolled joins its holdout's
// "holdout" arm, and a unit enrolled by bucket joins the "exposed" arm of
// every holdout covering the experiment.
func appendHoldoutArms(arms []holdoutArm, snap *assign.Snapshot, key string, r assign.Result) []holdoutArm {
	c, ok := snap.Lookup(key)
	if !ok {
		return arms
	}
	for _, h := range c.Holdouts() {
		switch {
		case r.Reason == assign.ReasonHoldout && r.WouldEnroll && h.Key() == r.Holdout:
			arms = append(arms, holdoutArm{h, assign.HoldoutHeldOut})
		case r.Enrolled && r.Reason == assign.ReasonBucket:
			arms = append(arms, holdoutArm{h, assign.HoldoutExposed})
		}
	}
	return arms
}

// logExposures records an exposure for each enrolled assignment, and for
// each holdout arm the unit joined (under its id of the holdout's unit
// type, when the request gave it), through the ingestion path, and
// returns once they are committed.
func (s *Server) logExposures(c *gin.Context, req assignRequest, storedID string, as []assignment, ids map[string]string, arms []holdoutArm) error {
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
	seen := map[string]bool{}
	for _, a := range arms {
		id := ids[a.h.UnitType()]
		if id == "" || seen[a.h.Key()] {
			continue // one arm per holdout per request; the first exposure is kept anyway
		}
		seen[a.h.Key()] = true
		hid := s.deps.Validator.IDs.ID(id)
		if s.deps.OptOuts.Has(a.h.UnitType(), hid) {
			continue
		}
		evID, err := uuid.NewV7()
		if err != nil {
			return err
		}
		events = append(events, flywheel.Event{
			ID: evID, Type: flywheel.EventExposure, UnitType: a.h.UnitType(), UnitID: hid,
			Timestamp: now, ReceivedAt: now, Experiment: assign.HoldoutPrefix + a.h.Key(), Variant: a.arm, Attributes: attrs,
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
