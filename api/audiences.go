package api

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
)

// createAudienceRequest is the body of POST /v1/audiences.
type createAudienceRequest struct {
	Key       string          `json:"key"`
	Name      string          `json:"name"`
	Condition json.RawMessage `json:"condition"`
}

func (s *Server) handleCreateAudience(c *gin.Context) {
	var req createAudienceRequest
	if err := s.decodeJSON(c, &req); err != nil {
		s.writeError(c, err)
		return
	}
	a := &flywheel.Audience{Key: req.Key, Name: req.Name, Condition: req.Condition}
	// The store validates a in its transaction, against the audiences
	// committed then; a refusal rolls everything back.
	out, err := s.deps.Store.CreateAudience(c.Request.Context(), a, actor(c))
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.refreshLive(c)
	c.Header("Location", "/v1/audiences/"+out.Key)
	c.JSON(http.StatusCreated, out)
}

func (s *Server) handleListAudiences(c *gin.Context) {
	limit, err := queryLimit(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	f := flywheel.AudienceFilter{Limit: limit, Cursor: c.Query("cursor")}
	switch c.Query("archived") {
	case "", "false":
	case "true":
		f.Archived = true
	default:
		s.writeError(c, flywheel.Invalid("archived", "archived must be true or false"))
		return
	}
	page, err := s.deps.Store.ListAudiences(c.Request.Context(), f)
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

func (s *Server) handleGetAudience(c *gin.Context) {
	a, err := s.deps.Store.FindAudienceByKey(c.Request.Context(), c.Param("key"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	if a.UsedBy, err = s.deps.Store.AudienceUsage(c.Request.Context(), a.Key); err != nil {
		s.writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, a)
}

func (s *Server) handlePatchAudience(c *gin.Context) {
	var p flywheel.AudiencePatch
	if _, err := s.decodePatch(c, &p, nil); err != nil {
		s.writeError(c, err)
		return
	}
	out, err := s.deps.Store.UpdateAudience(c.Request.Context(), c.Param("key"), p, actor(c))
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.refreshLive(c)
	c.JSON(http.StatusOK, out)
}

func (s *Server) handleArchiveAudience(c *gin.Context) {
	out, err := s.deps.Store.ArchiveAudience(c.Request.Context(), c.Param("key"), actor(c))
	if err != nil {
		s.writeError(c, err)
		return
	}
	s.refreshLive(c)
	c.JSON(http.StatusOK, out)
}
