package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

func (s *Server) handleHealthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// handleReadyz answers 200 when the database answers and every migration
// is applied, else 503 with the reason.
func (s *Server) handleReadyz(c *gin.Context) {
	checks := gin.H{"database": "ok", "migrations": "ok", "config": "ok"}
	ready := true
	if err := s.deps.Store.Ping(c.Request.Context()); err != nil {
		checks["database"], ready = "unreachable", false
	} else if s.deps.Ready != nil {
		if err := s.deps.Ready(c.Request.Context()); err != nil {
			checks["migrations"], ready = err.Error(), false
		}
	}
	if s.deps.Live.Current() == nil {
		checks["config"], ready = "not loaded", false
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
		c.Header("Retry-After", retryAfterSeconds)
	}
	c.JSON(status, gin.H{"ready": ready, "checks": checks})
}

func (s *Server) handleMetrics(c *gin.Context) {
	s.prom.ServeHTTP(c.Writer, c.Request)
}
