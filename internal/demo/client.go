package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flywheel-oss/flywheel"
)

// client calls the public /v1 API of one flywheel server with an admin key.
type client struct {
	base string // scheme://host[:port][/prefix], no trailing slash
	key  string
	http *http.Client
}

// maxAnswerBytes bounds what the demo reads of one answer.
const maxAnswerBytes = 64 << 20

// newClient checks the URL's form; it does not connect.
func newClient(rawURL, key string) (*client, error) {
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %v; want one such as http://127.0.0.1:8080", rawURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("server URL %q: want http:// or https:// followed by a host, such as http://127.0.0.1:8080", rawURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("server URL %q has no host; want one such as http://127.0.0.1:8080", rawURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server URL %q: give the server's address without a query or fragment", rawURL)
	}
	if key == "" {
		return nil, errors.New("an admin API key is required (flywheel keys create --scope admin prints one)")
	}
	return &client{
		base: strings.TrimRight(u.String(), "/"),
		key:  key,
		// Timeouts bound one request; a batch of events waits for its
		// commit, which takes well under this.
		http: &http.Client{Timeout: 2 * time.Minute},
	}, nil
}

// apiError is an error answer of the server, with the HTTP status and the
// server's own error (nil when the body was not the contract's JSON).
type apiError struct {
	Method, Path string
	Status       int
	Err          *flywheel.Error
	RetryAfter   time.Duration
	body         string
}

func (e *apiError) Error() string {
	what := e.body
	if e.Err != nil {
		what = e.Err.Error()
	}
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), what)
}

func (e *apiError) Unwrap() error {
	if e.Err == nil {
		return nil
	}
	return e.Err
}

// retryable reports whether the same request may succeed later: the
// server is overloaded or its database unavailable.
func (e *apiError) retryable() bool {
	return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests
}

// unreachableError is a request that got no answer.
type unreachableError struct {
	base string
	err  error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach flywheel at %s: %v (is the server running? start one with: flywheel serve)", e.base, e.err)
}

func (e *unreachableError) Unwrap() error { return e.err }

// do sends one request (in as JSON when not nil) and decodes a 2xx answer
// into out (when not nil). It returns the status. Any other status is an
// *apiError; no answer is an *unreachableError.
func (c *client) do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, &unreachableError{base: c.base, err: unwrapURLError(err)}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		return res.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if res.StatusCode/100 != 2 {
		ae := &apiError{Method: method, Path: path, Status: res.StatusCode, body: snippet(raw)}
		var wrapped struct {
			Error *flywheel.Error `json:"error"`
		}
		if json.Unmarshal(raw, &wrapped) == nil && wrapped.Error != nil && wrapped.Error.Code != "" {
			ae.Err = wrapped.Error
		}
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
			ae.RetryAfter = time.Duration(s) * time.Second
		}
		return res.StatusCode, ae
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return res.StatusCode, fmt.Errorf("%s %s: the answer is not flywheel's JSON (%v): %s", method, path, err, snippet(raw))
		}
	}
	return res.StatusCode, nil
}

// unwrapURLError drops the *url.Error wrapper, which repeats the method
// and URL the caller already names.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// snippet is the start of an answer that is not the contract's JSON.
func snippet(raw []byte) string {
	s := strings.TrimSpace(string(raw))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "(empty answer)"
	}
	return s
}

// check makes sure the server answers as flywheel does and that the key
// is a live admin key, with an error that says what to do otherwise.
func (c *client) check(ctx context.Context) error {
	var health struct {
		Status string `json:"status"`
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/healthz", nil)
	if err != nil {
		return err
	}
	res, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return fmt.Errorf("cannot reach flywheel at %s: unknown host %q", c.base, dnsErr.Name)
		}
		return &unreachableError{base: c.base, err: unwrapURLError(err)}
	}
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	res.Body.Close()
	if res.StatusCode != http.StatusOK || json.Unmarshal(raw, &health) != nil || health.Status != "ok" {
		return fmt.Errorf("%s does not answer as a flywheel server (GET /healthz: %d %s)", c.base, res.StatusCode, snippet(raw))
	}
	_, err = c.do(ctx, http.MethodGet, "/v1/experiments?limit=1", nil, nil)
	return c.explain(err)
}

// ErrUnknownKey is the error (wrapped) of a key the server does not know.
var ErrUnknownKey = errors.New("does not know this key")

// explain turns the key's refusals into what to do about them; other
// errors are returned as they are. A key that may read but not write (an
// sdk or a read-only key) is refused at the demo's first write.
func (c *client) explain(err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusUnauthorized:
			return fmt.Errorf("the server at %s %w (401): pass a live admin key with --key (flywheel keys create --scope admin prints one)", c.base, ErrUnknownKey)
		case http.StatusForbidden:
			return fmt.Errorf("the key may not %s %s (403): the demo defines metrics and experiments, which needs a key of scope admin", ae.Method, ae.Path)
		}
	}
	return err
}
