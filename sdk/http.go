package sdk

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ServerError is a non-2xx answer of the server, with the contract's error
// body (API.md, "Errors") when it had one.
type ServerError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the error code, e.g. "unauthenticated" or "overloaded".
	Code string
	// Message is the server's explanation.
	Message string
	// RetryAfter is the wait the server asked for (Retry-After), or 0.
	RetryAfter time.Duration
}

// Error formats the error as "HTTP 401 unauthenticated: message".
func (e *ServerError) Error() string {
	msg := "HTTP " + strconv.Itoa(e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Retryable reports whether the same request may succeed later: 408, 429
// and 5xx other than 501 and 505.
func (e *ServerError) Retryable() bool {
	return retryableStatus(e.Status)
}

func retryableStatus(s int) bool {
	return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests ||
		(s >= 500 && s != http.StatusNotImplemented && s != http.StatusHTTPVersionNotSupported)
}

// maxRetryAfter caps how long a Retry-After can make the client wait.
const maxRetryAfter = 5 * time.Minute

// serverError reads a non-2xx response into a *ServerError.
func serverError(res *http.Response) *ServerError {
	e := &ServerError{Status: res.StatusCode, RetryAfter: parseRetryAfter(res.Header.Get("Retry-After"), time.Now())}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil {
		e.Code, e.Message = env.Error.Code, env.Error.Message
	}
	if e.Code == "" && e.Message == "" {
		e.Message = strings.TrimSpace(http.StatusText(res.StatusCode))
	}
	return e
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		d = time.Duration(min(max(secs, 0), int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// setHeaders sets what every request carries.
func (c *Client) setHeaders(req *http.Request) {
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("User-Agent", userAgent)
}

// userAgent names the SDK in requests.
const userAgent = "flywheel-go-sdk/1"

// drain discards the rest of a body so the connection can be reused.
func drain(res *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	_ = res.Body.Close()
}
