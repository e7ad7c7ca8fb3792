package api

import (
	"mime"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/ingest"
)

// rejection is one invalid event of a request, by its index.
type rejection struct {
	Index int             `json:"index"`
	Error *flywheel.Error `json:"error"`
}

// eventsResponse answers POST /v1/events once every accepted event is
// committed. Dropped counts the events of opted-out units, discarded on
// arrival by design (not an error of the sender).
type eventsResponse struct {
	Accepted   int         `json:"accepted"`
	Duplicates int         `json:"duplicates"`
	Dropped    int         `json:"dropped"`
	Rejected   []rejection `json:"rejected"`
}

func (s *Server) handleEvents(c *gin.Context) {
	body, err := readBody(c, ingest.MaxBodyBytes)
	if err != nil {
		s.writeError(c, err)
		return
	}
	mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	var raws []ingest.RawEvent
	switch mt {
	case "application/x-ndjson", "application/jsonl", "application/json-lines", "application/ndjson":
		raws, err = ingest.DecodeNDJSON(body)
	default:
		raws, err = ingest.DecodeJSON(body)
	}
	if err != nil {
		s.writeError(c, err)
		return
	}
	st := s.deps.Live.Current()
	if st == nil {
		s.writeError(c, flywheel.Errorf(flywheel.CodeUnavailable, "configuration not loaded yet; retry"))
		return
	}
	now := s.deps.Clock().UTC()
	res := eventsResponse{Rejected: []rejection{}}
	valid := make([]flywheel.Event, 0, len(raws))
	for _, r := range raws {
		ev, bad := s.deps.Validator.ValidateRaw(r, now, st)
		if bad != nil {
			res.Rejected = append(res.Rejected, rejection{Index: r.Index, Error: bad})
			continue
		}
		if s.deps.OptOuts.Has(ev.UnitType, ev.UnitID) {
			res.Dropped++
			s.deps.Ingest.Count(string(ev.Type), "dropped_opted_out", 1)
			continue
		}
		valid = append(valid, ev)
	}
	s.deps.Ingest.Count("any", "rejected", len(res.Rejected))
	accepted, err := s.deps.Ingest.Submit(c.Request.Context(), valid)
	if err != nil {
		s.writeError(c, err)
		return
	}
	res.Accepted, res.Duplicates = len(accepted), len(valid)-len(accepted)
	c.JSON(http.StatusOK, res)
}
