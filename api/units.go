package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
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
	if err := s.deps.Units.SetConsent(c.Request.Context(), u, *req.Analytics, actor(c)); err != nil {
		s.writeError(c, err)
		return
	}
	s.deps.OptOuts.Set(u, *req.Analytics)
	c.JSON(http.StatusOK, gin.H{"unit_type": u.UnitType, "unit_id": c.Param("unit_id"), "analytics": *req.Analytics})
}

// handleEraseUnit deletes everything held about a unit and its linked ids.
func (s *Server) handleEraseUnit(c *gin.Context) {
	u, err := s.unitRef(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	n, err := s.deps.Units.EraseUnit(c.Request.Context(), u, actor(c))
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"erased": n})
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
