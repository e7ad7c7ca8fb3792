package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// handleGetKey answers with the request's own key: its id, name, scope,
// displayable prefix and creation time, never its secret. A client such as
// the web UI asks it to know what the key may do (a viewer sees no write
// controls).
func (s *Server) handleGetKey(c *gin.Context) {
	c.JSON(http.StatusOK, callerKey(c))
}
