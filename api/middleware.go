package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flywheel-oss/flywheel"
)

const (
	ctxRequestID = "flywheel.request_id"
	ctxKey       = "flywheel.key"
)

func requestID(c *gin.Context) string { return c.GetString(ctxRequestID) }

// callerKey returns the authenticated key of the request.
func callerKey(c *gin.Context) *flywheel.APIKey {
	k, _ := c.Get(ctxKey)
	key, _ := k.(*flywheel.APIKey)
	return key
}

// actor is the name the audit log records for the caller.
func actor(c *gin.Context) string {
	if k := callerKey(c); k != nil {
		if k.Name != "" {
			return k.Name
		}
		return k.Prefix
	}
	return "unknown"
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg *prometheus.Registry) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flywheel_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flywheel_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// observe gives each request an id (X-Request-ID, kept from the client when
// it is sane), a deadline, one log line and its metrics.
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	id := c.GetHeader("X-Request-ID")
	if !saneRequestID(id) {
		id = newRequestID()
	}
	c.Set(ctxRequestID, id)
	c.Header("X-Request-ID", id)
	// A config stream lasts until the client leaves or the server shuts
	// down: no deadline. A unit list gets its own, longer one.
	switch c.FullPath() {
	case streamPath:
	default:
		timeout := s.deps.RequestTimeout
		if c.FullPath() == assignmentsRoute {
			timeout = s.deps.ListTimeout
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), timeout)
		defer cancel()
		c.Request = c.Request.WithContext(ctx)
	}

	c.Next()

	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	d := time.Since(start)
	status := c.Writer.Status()
	s.metrics.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(status)).Inc()
	s.metrics.duration.WithLabelValues(route, c.Request.Method).Observe(d.Seconds())
	if route == "/metrics" || route == "/healthz" || route == "/readyz" {
		return
	}
	s.deps.Logger.LogAttrs(c.Request.Context(), levelFor(status), "request",
		slog.String("method", c.Request.Method), slog.String("route", route), slog.Int("status", status),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000), slog.String("request_id", id))
}

func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// recover turns a panic into a 500 with the contract's JSON, logged once.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.writeError(c, fmt.Errorf("panic: %v", r))
		}
	}()
	c.Next()
}

// authenticateV1 requires a valid key of any scope for a path under /v1:
// gin's answers to an unknown route or method there come after
// authentication, as every other /v1 answer does.
func (s *Server) authenticateV1(c *gin.Context) {
	if p := c.Request.URL.Path; p == "/v1" || strings.HasPrefix(p, "/v1/") {
		s.authenticate(anyScope)(c)
		return
	}
	c.Next()
}

// anyScope is the need of authenticateV1: a valid key of any scope.
const anyScope flywheel.Scope = ""

// authenticate requires a bearer key whose scope allows the route: admin
// keys may call everything, sdk and viewer keys only the routes registered
// with their own scope. Any other key is a 403 that says what the key may do.
func (s *Server) authenticate(need flywheel.Scope) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.GetHeader("Authorization")
		secret, ok := strings.CutPrefix(h, "Bearer ")
		secret = strings.TrimSpace(secret)
		if !ok || secret == "" {
			c.Header("WWW-Authenticate", `Bearer realm="flywheel"`)
			s.writeError(c, flywheel.Errorf(flywheel.CodeUnauthenticated, "missing API key: send Authorization: Bearer <key>"))
			return
		}
		key, err := s.keys.find(c.Request.Context(), secret)
		if err != nil {
			if flywheel.ErrorCode(err) == flywheel.CodeNotFound {
				c.Header("WWW-Authenticate", `Bearer realm="flywheel", error="invalid_token"`)
				s.writeError(c, flywheel.Errorf(flywheel.CodeUnauthenticated, "unknown API key"))
				return
			}
			s.writeError(c, err)
			return
		}
		if need != anyScope && key.Scope != flywheel.ScopeAdmin && key.Scope != need {
			s.writeError(c, flywheel.Errorf(flywheel.CodePermissionDenied, "this call needs %s; %s", needs[need], mayOnly[key.Scope]))
			return
		}
		c.Set(ctxKey, key)
		c.Next()
	}
}

// needs and mayOnly word the 403 of a key whose scope does not allow a
// route: what the route needs, and what the key may do instead.
var (
	needs = map[flywheel.Scope]string{
		flywheel.ScopeAdmin:  "an admin key",
		flywheel.ScopeSDK:    "an sdk or admin key",
		flywheel.ScopeViewer: "a viewer or admin key",
	}
	mayOnly = map[flywheel.Scope]string{
		flywheel.ScopeSDK:    "an sdk key may only fetch /v1/sdk/config, assign and send events",
		flywheel.ScopeViewer: "a viewer key may only read experiments, metrics, saved audiences, holdouts, results and history, and use the power calculator",
	}
)

// keyCache keeps recent key lookups for ttl so that a hot path (assign,
// events) does not query the database per request. Unknown keys are not
// cached, so a new key works at once; a revoked key stops working within ttl.
// While the database is unavailable, a key it confirmed before stays valid
// after its ttl (no key can be revoked meanwhile), so /v1/assign, which
// needs nothing else from the database, keeps answering through an outage
// of any length.
type keyCache struct {
	store flywheel.KeyStore
	ttl   time.Duration
	mu    sync.RWMutex
	m     map[string]cachedKey
}

type cachedKey struct {
	key     *flywheel.APIKey
	expires time.Time
}

func newKeyCache(store flywheel.KeyStore, ttl time.Duration) *keyCache {
	return &keyCache{store: store, ttl: ttl, m: map[string]cachedKey{}}
}

func (kc *keyCache) find(ctx context.Context, secret string) (*flywheel.APIKey, error) {
	h := string(flywheel.HashKey(secret))
	now := time.Now()
	kc.mu.RLock()
	ck, ok := kc.m[h]
	kc.mu.RUnlock()
	if ok && now.Before(ck.expires) {
		return ck.key, nil
	}
	key, err := kc.store.FindKeyBySecret(ctx, secret)
	if err != nil {
		if ok && flywheel.Retryable(err) {
			return ck.key, nil // stale, until the database answers again
		}
		if ok {
			kc.mu.Lock()
			delete(kc.m, h) // revoked or deleted
			kc.mu.Unlock()
		}
		return nil, err
	}
	kc.mu.Lock()
	if len(kc.m) > 10000 {
		clear(kc.m)
	}
	kc.m[h] = cachedKey{key: key, expires: now.Add(kc.ttl)}
	kc.mu.Unlock()
	return key, nil
}
