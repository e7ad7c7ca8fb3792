// Package api is flywheel's HTTP interface, on gin: NewServer returns an
// http.Handler with every route of the public contract. It talks to storage
// only through the interfaces declared in package flywheel, maps errors to
// statuses in one place (writeError), and never logs raw unit ids or keys.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/ingest"
	"github.com/flywheel-oss/flywheel/live"
)

// Store is everything the API needs from storage.
type Store interface {
	flywheel.ExperimentStore
	flywheel.AudienceStore
	flywheel.HoldoutStore
	flywheel.MetricStore
	flywheel.KeyStore
	flywheel.BanditStore
	Ping(ctx context.Context) error
}

// Ingest is the ingestion path: the group committer.
type Ingest interface {
	Submit(ctx context.Context, events []flywheel.Event) ([]int, error)
	Count(eventType, outcome string, n int)
}

// Deps are the server's collaborators; cmd/flywheel wires the real ones.
type Deps struct {
	Store   Store
	Live    *live.Registry
	Units   flywheel.UnitStore
	Results Results
	Ingest  Ingest
	// Validator checks events (and pseudonymises ids when it has a key).
	Validator *ingest.Validator
	// OptOuts is the in-memory set of units that withdrew consent.
	OptOuts  *ingest.OptOuts
	Logger   *slog.Logger
	Registry *prometheus.Registry // where /metrics collectors go; nil = a new one
	Clock    flywheel.Clock       // nil = time.Now
	// Ready reports whether migrations are applied (for /readyz); nil = yes.
	Ready func(ctx context.Context) error
	// MaxBodyBytes limits the bodies of every route but POST /v1/events
	// (ingest.MaxBodyBytes); 0 = 1 MiB.
	MaxBodyBytes int64
	// RequestTimeout bounds each request's context; 0 = 30 s.
	RequestTimeout time.Duration
	// ListTimeout bounds a unit list's request (POST
	// /v1/experiments/{key}/assignments) instead, and lifts the HTTP
	// server's read and write deadlines to it; 0 = 10 min.
	ListTimeout time.Duration
	// UI is the web UI (package web), served at "/" and "/ui/"; nil = none.
	UI http.Handler
	// EraseWait is how long DELETE /v1/units/... waits for a running
	// aggregation cycle before it answers 202 and lets the background
	// finish; 0 = 10 s.
	EraseWait time.Duration
	// StreamHeartbeat is how often GET /v1/sdk/stream sends a comment line
	// to an idle stream, so that proxies keep the connection; 0 = 20 s.
	StreamHeartbeat time.Duration
	// StreamWriteTimeout bounds each write to a config stream: a client
	// that stops reading (its connection's buffers full) loses its stream
	// then, and so does not keep a stream slot, nor hold up shutdown,
	// for ever; 0 = 30 s.
	StreamWriteTimeout time.Duration
	// MaxStreams bounds the open config streams of this server (0 =
	// 10,000; over it, 503 overloaded), MaxStreamsPerKey those of one key
	// (0 = 5,000; over it, 429 rate_limited).
	MaxStreams, MaxStreamsPerKey int
}

// Server serves the API.
type Server struct {
	deps    Deps
	engine  *gin.Engine
	keys    *keyCache
	metrics *httpMetrics
	prom    http.Handler
	streams *streams
}

// NewServer builds the handler with every route.
func NewServer(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.MaxBodyBytes == 0 {
		d.MaxBodyBytes = 1 << 20
	}
	if d.Validator == nil {
		d.Validator = &ingest.Validator{}
	}
	if d.RequestTimeout == 0 {
		d.RequestTimeout = 30 * time.Second
	}
	if d.ListTimeout == 0 {
		d.ListTimeout = 10 * time.Minute
	}
	if d.EraseWait == 0 {
		d.EraseWait = 10 * time.Second
	}
	if d.StreamHeartbeat <= 0 {
		d.StreamHeartbeat = defaultStreamHeartbeat
	}
	if d.StreamWriteTimeout <= 0 {
		d.StreamWriteTimeout = defaultStreamWriteTimeout
	}
	if d.MaxStreams <= 0 {
		d.MaxStreams = defaultMaxStreams
	}
	if d.MaxStreamsPerKey <= 0 {
		d.MaxStreamsPerKey = defaultMaxStreamsPerKey
	}
	s := &Server{deps: d, keys: newKeyCache(d.Store, time.Minute), metrics: newHTTPMetrics(d.Registry),
		streams: newStreams(d.MaxStreams, d.MaxStreamsPerKey)}
	d.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flywheel_sdk_streams",
		Help: "Open SDK config streams (GET /v1/sdk/stream)."}, func() float64 { return float64(s.streams.open()) }))
	s.prom = promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{Registry: d.Registry})
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.UseRawPath = true // unit ids may hold an escaped "/"
	e.UnescapePathValues = true
	// gin reuses a *gin.Context after its handler returns, so handlers pass
	// c.Request.Context() to anything that may outlive them (the database).
	e.ContextWithFallback = true
	s.engine = e
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

// routes lists every route of the API in one place.
func (s *Server) routes() {
	e := s.engine
	e.Use(s.observe, s.recover)
	// Under /v1 every answer but the public ones needs a key first, an
	// unknown route included: a caller without a key learns nothing.
	e.NoRoute(s.authenticateV1, func(c *gin.Context) {
		s.writeError(c, flywheel.Errorf(flywheel.CodeNotFound, "no route %s %s", c.Request.Method, c.Request.URL.Path))
	})
	e.NoMethod(s.authenticateV1, func(c *gin.Context) {
		s.writeError(c, &flywheel.Error{Code: "method_not_allowed", Message: "method " + c.Request.Method + " is not allowed here"})
	})

	e.GET("/healthz", s.handleHealthz)
	e.GET("/readyz", s.handleReadyz)
	e.GET("/metrics", s.handleMetrics)
	e.GET("/v1/openapi.json", s.handleOpenAPI) // public: it holds no data

	// The web UI: a page and its files outside /v1, which call the API like
	// any client. They are not part of the API contract, so not in the
	// OpenAPI document (its test knows this group by its name, ui).
	if s.deps.UI != nil {
		ui := e.Group("/")
		ui.GET("", gin.WrapH(s.deps.UI))
		ui.HEAD("", gin.WrapH(s.deps.UI))
		ui.GET("ui/*file", gin.WrapH(s.deps.UI))
		ui.HEAD("ui/*file", gin.WrapH(s.deps.UI))
	}

	keyed := e.Group("/v1", s.authenticate(anyScope))
	keyed.GET("/key", s.handleGetKey)

	sdk := e.Group("/v1", s.authenticate(flywheel.ScopeSDK))
	sdk.GET("/sdk/config", s.handleSDKConfig)
	sdk.GET("/sdk/stream", s.handleSDKStream) // streamPath
	sdk.GET("/sdk/opt-outs", s.handleSDKOptOuts)
	sdk.POST("/assign", s.handleAssign)
	sdk.POST("/events", s.handleEvents)

	// Reads without a unit's data, for viewer (and admin) keys.
	viewer := e.Group("/v1", s.authenticate(flywheel.ScopeViewer))
	viewer.GET("/experiments", s.handleListExperiments)
	viewer.GET("/experiments/:key", s.handleGetExperiment)
	viewer.GET("/experiments/:key/history", s.handleHistory(s.deps.Store.ExperimentHistory))
	viewer.GET("/experiments/:key/epochs", s.handleExperimentEpochs)
	viewer.GET("/experiments/:key/results", s.handleResults)
	viewer.GET("/experiments/:key/results/timeseries", s.handleTimeseries)
	viewer.GET("/experiments/:key/uplift", s.handleUplift)
	viewer.GET("/experiments/:key/attributes", s.handleAttributes)
	viewer.POST("/power", s.handlePower)
	viewer.GET("/audiences", s.handleListAudiences)
	viewer.GET("/audiences/:key", s.handleGetAudience)
	viewer.GET("/audiences/:key/history", s.handleHistory(s.deps.Store.AudienceHistory))
	viewer.GET("/holdouts", s.handleListHoldouts)
	viewer.GET("/holdouts/:key", s.handleGetHoldout)
	viewer.GET("/holdouts/:key/history", s.handleHistory(s.deps.Store.HoldoutHistory))
	viewer.GET("/holdouts/:key/results", s.handleHoldoutResults)
	viewer.GET("/holdouts/:key/results/timeseries", s.handleHoldoutTimeseries)
	viewer.GET("/metrics", s.handleListMetrics)
	viewer.GET("/metrics/:key", s.handleGetMetric)

	admin := e.Group("/v1", s.authenticate(flywheel.ScopeAdmin))
	admin.POST("/experiments", s.handleCreateExperiment)
	admin.PATCH("/experiments/:key", s.handlePatchExperiment)
	admin.POST("/experiments/:key/start", s.handleTransition("start"))
	admin.POST("/experiments/:key/stop", s.handleTransition("stop"))
	admin.POST("/experiments/:key/archive", s.handleTransition("archive"))
	admin.POST("/experiments/:key/assignments", s.handleAssignList) // assignmentsRoute
	admin.POST("/audiences", s.handleCreateAudience)
	admin.PATCH("/audiences/:key", s.handlePatchAudience)
	admin.POST("/audiences/:key/archive", s.handleArchiveAudience)
	admin.POST("/holdouts", s.handleCreateHoldout)
	admin.PATCH("/holdouts/:key", s.handlePatchHoldout)
	admin.POST("/holdouts/:key/start", s.handleHoldoutTransition("start"))
	admin.POST("/holdouts/:key/stop", s.handleHoldoutTransition("stop"))
	admin.POST("/holdouts/:key/archive", s.handleHoldoutTransition("archive"))
	admin.POST("/metrics", s.handleCreateMetric)
	admin.PATCH("/metrics/:key", s.handlePatchMetric)
	admin.GET("/units/:unit_type/:unit_id", s.handleDescribeUnit)
	admin.PUT("/units/:unit_type/:unit_id/consent", s.handleConsent)
	admin.DELETE("/units/:unit_type/:unit_id", s.handleEraseUnit)
	admin.GET("/erasures/:id", s.handleGetErasure)
}
