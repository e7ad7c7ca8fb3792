package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
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

// decodeJSON reads one JSON value from the request body into v, rejecting
// unknown fields, trailing data and bodies over the limit, with errors that
// name the field at fault.
func decodeJSON(c *gin.Context, v any) error {
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return flywheel.Invalid("", "request body must hold exactly one JSON value")
	}
	return nil
}

// decodePatch decodes a PATCH body into v as decodeJSON does and returns
// the top-level fields the body set to JSON null. A null clears a field of
// nullable; on any other field it is refused, naming the field, since it
// would otherwise be read as "leave unchanged" and silently ignored.
func decodePatch(c *gin.Context, v any, nullable []string) (map[string]bool, error) {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		return nil, jsonError(err)
	}
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	if err := decodeJSON(c, v); err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, jsonError(err)
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

// jsonError turns an encoding/json error into an invalid_argument (or
// payload_too_large) error with the field path when there is one.
func jsonError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return flywheel.Errorf(flywheel.CodePayloadTooLarge, "request body is larger than %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return flywheel.Invalid("", "request body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return flywheel.Invalid("", "malformed JSON: unexpected end of input")
	case errors.As(err, &syn):
		return flywheel.Invalid("", "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return flywheel.Invalid("", "request body must be a JSON %s, not %s", typ.Type.Kind(), typ.Value)
		}
		return flywheel.Invalid(field, "%s must be %s, not %s", field, jsonKind(typ.Type.String()), typ.Value)
	}
	// encoding/json has no typed error for unknown fields; its message is
	// `json: unknown field "name"`.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return flywheel.Invalid(name, "unknown field %q", name)
	}
	return flywheel.Invalid("", "invalid JSON: %v", err)
}

func jsonKind(goType string) string {
	switch {
	case strings.Contains(goType, "float"), strings.Contains(goType, "int"):
		return "a number"
	case goType == "string", strings.HasSuffix(goType, "Status"), strings.HasSuffix(goType, "Analysis"),
		strings.HasSuffix(goType, "Type"), strings.HasSuffix(goType, "Direction"), strings.HasSuffix(goType, "Scope"):
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "[]"), strings.HasPrefix(goType, "*[]"):
		return "an array"
	case strings.HasPrefix(goType, "map"), strings.HasPrefix(goType, "*map"):
		return "an object"
	case strings.HasSuffix(goType, "LayerRange"):
		return "an array of two integers [from, to]"
	}
	return fmt.Sprintf("a JSON value of the right type (%s)", goType)
}
