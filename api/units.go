package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/assign"
)

// unitRef reads the unit from the path, in its stored (pseudonymised) form.
func (s *Server) unitRef(c *gin.Context) (flywheel.UnitRef, error) {
	u := flywheel.UnitRef{UnitType: c.Param("unit_type"), UnitID: c.Param("unit_id")}
	if !unitTypePattern.MatchString(u.UnitType) {
		return u, flywheel.Invalid("unit_type", "unit_type must match ^[a-z_]{1,32}$")
	}
	if u.UnitID == "" || len(u.UnitID) > 256 {
		return u, flywheel.Invalid("unit_id", "unit_id must be 1 to 256 bytes")
	}
	u.UnitID = s.deps.Validator.IDs.ID(u.UnitID)
	return u, nil
}

// consentRequest is the body of PUT /v1/units/{unit_type}/{unit_id}/consent.
type consentRequest struct {
	Analytics *bool `json:"analytics"`
}

// handleConsent records a unit's analytics consent: false opts it out of
// every experiment (never enrolled, its events dropped, its past data out of
// every result); true opts it back in.
func (s *Server) handleConsent(c *gin.Context) {
	u, err := s.unitRef(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	var req consentRequest
	if err := s.decodeJSON(c, &req); err != nil {
		s.writeError(c, err)
		return
	}
	if req.Analytics == nil {
		s.writeError(c, flywheel.Invalid("analytics", "analytics is required: true or false"))
		return
	}
	// SDKs learn of the change through the token of the raw id, which the
	// server sees only here (the stored id may be pseudonymised).
	token := assign.OptOutToken(u.UnitType, c.Param("unit_id"))
	if err := s.deps.Units.SetConsent(c.Request.Context(), u, *req.Analytics, token, actor(c)); err != nil {
		s.writeError(c, err)
		return
	}
	s.deps.OptOuts.Set(u, *req.Analytics)
	c.JSON(http.StatusOK, gin.H{"unit_type": u.UnitType, "unit_id": c.Param("unit_id"), "analytics": *req.Analytics})
}

// handleEraseUnit deletes everything held about a unit and its linked ids:
// 200 with the counts when it is done within EraseWait, else 202 with the
// request to poll (it waits for a running aggregation cycle, such as the
// first build of a large experiment, and is carried out in the background).
func (s *Server) handleEraseUnit(c *gin.Context) {
	u, err := s.unitRef(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	st, err := s.deps.Units.RequestErasure(c.Request.Context(), u, actor(c), s.deps.EraseWait)
	if err != nil {
		s.writeError(c, err)
		return
	}
	if st.Status != flywheel.ErasureDone {
		c.Header("Location", "/v1/erasures/"+st.ID)
		c.Header("Retry-After", "5")
		c.JSON(http.StatusAccepted, gin.H{"erasure": st})
		return
	}
	c.JSON(http.StatusOK, gin.H{"erased": st.Erased, "erasure": st})
}

// handleGetErasure reports an erasure request: pending, or done with its
// counts.
func (s *Server) handleGetErasure(c *gin.Context) {
	st, err := s.deps.Units.FindErasure(c.Request.Context(), c.Param("id"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, st)
}

// handleDescribeUnit reports what is held about a unit (subject access).
func (s *Server) handleDescribeUnit(c *gin.Context) {
	u, err := s.unitRef(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	info, err := s.deps.Units.DescribeUnit(c.Request.Context(), u)
	if err != nil {
		s.writeError(c, err)
		return
	}
	info.UnitID = c.Param("unit_id") // show the id as the caller knows it
	c.JSON(http.StatusOK, info)
}
