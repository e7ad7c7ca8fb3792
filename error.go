package flywheel

import (
	"errors"
	"fmt"
)

// Code is the machine-readable kind of an error; the api maps each code to
// one HTTP status.
type Code string

// The error codes of the public contract, plus unavailable (503, retryable:
// the database cannot be reached).
const (
	CodeInvalidArgument  Code = "invalid_argument"
	CodeUnauthenticated  Code = "unauthenticated"
	CodePermissionDenied Code = "permission_denied"
	CodeNotFound         Code = "not_found"
	CodeConflict         Code = "conflict"
	CodePayloadTooLarge  Code = "payload_too_large"
	CodeRateLimited      Code = "rate_limited"
	CodeOverloaded       Code = "overloaded"
	CodeUnavailable      Code = "unavailable"
	CodeInternal         Code = "internal"
)

// Error is an error meant for the caller of the API: a code, a message that
// is safe to show, and the input field at fault when there is one. Details
// lists every problem when validation found several (the first is also in
// Code, Message and Field).
type Error struct {
	Code    Code    `json:"code"`
	Message string  `json:"message"`
	Field   string  `json:"field,omitempty"`
	Details []Error `json:"details,omitempty"`
	// Err is the underlying cause, for logs only; it is never shown.
	Err error `json:"-"`
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the client should try again later: the
// database is unreachable or the service is overloaded.
func Retryable(err error) bool {
	switch ErrorCode(err) {
	case CodeUnavailable, CodeOverloaded, CodeRateLimited:
		return true
	}
	return false
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns an invalid_argument *Error for one input field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidArgument, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// CodeInternal when there is none. It is nil-safe: ErrorCode(nil) is "".
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// Problems collects validation problems so that a caller sees all of them at
// once; Err returns nil when there were none.
type Problems struct{ list []Error }

// Add records a problem with field and message.
func (p *Problems) Add(field, format string, args ...any) {
	p.list = append(p.list, Error{Code: CodeInvalidArgument, Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err returns the problems as one *Error (the first problem, with every
// problem in Details), or nil.
func (p *Problems) Err() error {
	if len(p.list) == 0 {
		return nil
	}
	first := p.list[0]
	e := &Error{Code: first.Code, Message: first.Message, Field: first.Field}
	if len(p.list) > 1 {
		e.Details = p.list
	}
	return e
}
