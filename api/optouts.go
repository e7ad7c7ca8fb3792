package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
)

// Opt-out feed limits: a page holds at most maxOptOutPage changes, and the
// cursor of a caught-up reader stays optOutHorizon behind the clock, so
// that a consent change whose transaction commits late (its time was taken
// before the commit) is still read once more.
const (
	defaultOptOutPage = 10000
	maxOptOutPage     = 50000
	optOutHorizon     = 5 * time.Second
)

// optOutCursor is a position in the ordered opt-out changes.
type optOutCursor struct {
	at    time.Time
	kind  int
	token uint64
}

func (c optOutCursor) String() string {
	raw := fmt.Sprintf("v1:%d:%d:%016x", c.at.UnixMicro(), c.kind, c.token)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func parseOptOutCursor(s string) (optOutCursor, error) {
	if s == "" {
		return optOutCursor{at: time.Unix(0, 0).UTC(), kind: -1}, nil
	}
	bad := flywheel.Invalid("cursor", "cursor is not one this server gave; start again without it")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return optOutCursor{}, bad
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 4 || parts[0] != "v1" {
		return optOutCursor{}, bad
	}
	micros, err1 := strconv.ParseInt(parts[1], 10, 64)
	kind, err2 := strconv.Atoi(parts[2])
	token, err3 := strconv.ParseUint(parts[3], 16, 64)
	if err1 != nil || err2 != nil || err3 != nil || kind < -1 || kind > 1 {
		return optOutCursor{}, bad
	}
	return optOutCursor{at: time.UnixMicro(micros).UTC(), kind: kind, token: token}, nil
}

// handleSDKOptOuts serves the changes of the opt-out set for SDKs, as
// tokens (assign.OptOutToken of the raw ids), never ids: an SDK reads
// every page from no cursor, then polls with the last cursor. Within a
// page the last change of a token wins.
func (s *Server) handleSDKOptOuts(c *gin.Context) {
	from, err := parseOptOutCursor(c.Query("cursor"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	limit := defaultOptOutPage
	if v := c.Query("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxOptOutPage {
			s.writeError(c, flywheel.Invalid("limit", "limit must be an integer in [1, %d]", maxOptOutPage))
			return
		}
	}
	changes, err := s.deps.Units.OptOutTokens(c.Request.Context(), from.at, from.kind, from.token, limit)
	if err != nil {
		s.writeError(c, err)
		return
	}
	state := make(map[uint64]bool, len(changes))
	for _, ch := range changes {
		state[ch.Token] = ch.OptedOut
	}
	out, in := []string{}, []string{}
	for token, optedOut := range state {
		h := fmt.Sprintf("%016x", token)
		if optedOut {
			out = append(out, h)
		} else {
			in = append(in, h)
		}
	}
	next := from
	if n := len(changes); n > 0 {
		last := changes[n-1]
		next = optOutCursor{at: last.At, kind: last.Kind, token: last.Token}
	}
	more := len(changes) == limit
	if horizon := s.deps.Clock().Add(-optOutHorizon); !more && next.at.After(horizon) {
		next = optOutCursor{at: horizon.UTC(), kind: -1}
	}
	c.Header("Cache-Control", "no-cache")
	c.JSON(http.StatusOK, gin.H{"opted_out": out, "opted_in": in, "cursor": next.String(), "more": more})
}
