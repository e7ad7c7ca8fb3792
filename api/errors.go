package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/strictjson"
)

// statusOf is the one table from error code to HTTP status.
var statusOf = map[flywheel.Code]int{
	flywheel.CodeInvalidArgument:  http.StatusBadRequest,
	flywheel.CodeUnauthenticated:  http.StatusUnauthorized,
	flywheel.CodePermissionDenied: http.StatusForbidden,
	flywheel.CodeNotFound:         http.StatusNotFound,
	flywheel.CodeConflict:         http.StatusConflict,
	flywheel.CodePayloadTooLarge:  http.StatusRequestEntityTooLarge,
	flywheel.CodeRateLimited:      http.StatusTooManyRequests,
	flywheel.CodeOverloaded:       http.StatusServiceUnavailable,
	flywheel.CodeUnavailable:      http.StatusServiceUnavailable,
	flywheel.CodeInternal:         http.StatusInternalServerError,
	"method_not_allowed":          http.StatusMethodNotAllowed,
}

// retryAfterSeconds is what a retryable error tells clients to wait.
const retryAfterSeconds = "1"

// writeError answers with the JSON error of the contract. Errors that are
// not a *flywheel.Error are internal: logged once, shown as "internal error".
func (s *Server) writeError(c *gin.Context, err error) {
	var fe *flywheel.Error
	if !errors.As(err, &fe) {
		s.deps.Logger.ErrorContext(c.Request.Context(), "internal error", "route", c.FullPath(), "request_id", requestID(c), "err", err)
		fe = &flywheel.Error{Code: flywheel.CodeInternal, Message: "internal error"}
	} else if fe.Err != nil {
		s.deps.Logger.WarnContext(c.Request.Context(), "request failed", "code", fe.Code, "route", c.FullPath(), "request_id", requestID(c), "err", fe.Err)
	}
	status, ok := statusOf[fe.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if flywheel.Retryable(fe) {
		c.Header("Retry-After", retryAfterSeconds)
	}
	c.AbortWithStatusJSON(status, gin.H{"error": fe})
}

// readBody reads the request body, refusing one over limit bytes with a
// payload_too_large. Handlers read their bodies themselves, after
// authentication, so that a caller without a key learns nothing from the
// size of what it sends.
func readBody(c *gin.Context, limit int64) ([]byte, error) {
	if c.Request.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	body, err := readAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit), c.Request.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(limit)
		}
		return nil, flywheel.Invalid("", "reading the request body: %v", err)
	}
	return body, nil
}

// readAll is io.ReadAll with room for size bytes from the start (the
// request's Content-Length, when it gives one and within the limit): a
// 1,000-event request is about 250 KB, which io.ReadAll reaches by
// growing from 512 bytes nine times, allocating and copying as it goes.
func readAll(r io.Reader, size int64) ([]byte, error) {
	if size <= 0 {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, size+1) // +1: the final read sees EOF without growing
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) { // longer than it said: grow as io.ReadAll does
			b = append(b, 0)[:len(b)]
		}
	}
}

func tooLarge(limit int64) error {
	return flywheel.Errorf(flywheel.CodePayloadTooLarge, "request body is larger than %d bytes", limit)
}

// decodeJSON reads one JSON value from the request body (at most
// MaxBodyBytes) into v, with strictjson's rules: exact field names, no key
// twice, at most strictjson.MaxDepth levels, text PostgreSQL can store;
// each problem names the field at fault.
func (s *Server) decodeJSON(c *gin.Context, v any) error {
	body, err := readBody(c, s.deps.MaxBodyBytes)
	if err != nil {
		return err
	}
	return decodeBody(body, v)
}

// decodeBody is decodeJSON of a body already read.
func decodeBody(body []byte, v any) error {
	if err := strictjson.Decode(body, v, strictjson.Options{}); err != nil {
		return err
	}
	return nil
}

// decodePatch decodes a PATCH body into v as decodeJSON does and returns
// the top-level fields the body set to JSON null. A null clears a field of
// nullable; on any other field it is refused, naming the field, since it
// would otherwise be read as "leave unchanged" and silently ignored.
func (s *Server) decodePatch(c *gin.Context, v any, nullable []string) (map[string]bool, error) {
	body, err := readBody(c, s.deps.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	if err := decodeBody(body, v); err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, flywheel.Invalid("", "request body must be a JSON object")
	}
	var nulls map[string]bool
	for name, raw := range fields {
		if string(bytes.TrimSpace(raw)) != "null" {
			continue
		}
		if !slices.Contains(nullable, name) {
			return nil, flywheel.Invalid(name, "%s cannot be null: leave it out to keep it as it is, or give a value (only %s can be cleared with null)", name, strings.Join(nullable, ", "))
		}
		if nulls == nil {
			nulls = map[string]bool{}
		}
		nulls[name] = true
	}
	return nulls, nil
}
