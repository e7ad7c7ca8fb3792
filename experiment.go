package flywheel

import (
	"context"
	"encoding/json"
	"time"

	"github.com/flywheel-oss/flywheel/assign"
)

// Status is where an experiment is in its life: draft → running → stopped
// (→ archived). Only running experiments enrol units.
type Status string

// The experiment statuses.
const (
	StatusDraft    Status = "draft"
	StatusRunning  Status = "running"
	StatusStopped  Status = "stopped"
	StatusArchived Status = "archived"
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case StatusDraft, StatusRunning, StatusStopped, StatusArchived:
		return true
	}
	return false
}

// Analysis is how results are read: fixed-horizon, or sequential
// (always-valid, safe to peek at any time).
type Analysis string

// The analysis kinds.
const (
	AnalysisFixed      Analysis = "fixed"
	AnalysisSequential Analysis = "sequential"
)

// Variant is one arm of an experiment. The first variant is the control.
type Variant = assign.Variant

// LayerRange is the [From, To) share of a layer's 10,000 buckets that an
// experiment owns.
type LayerRange = assign.LayerRange

// MetricRefs names the metrics an experiment is judged on, by role.
type MetricRefs struct {
	Primary    []string `json:"primary"`
	Guardrails []string `json:"guardrails"`
	Secondary  []string `json:"secondary"`
}

// All returns every metric key with its role, primary first, without
// duplicates.
func (m MetricRefs) All() []MetricRole {
	var out []MetricRole
	seen := map[string]bool{}
	for _, g := range []struct {
		role string
		keys []string
	}{{"primary", m.Primary}, {"guardrail", m.Guardrails}, {"secondary", m.Secondary}} {
		for _, k := range g.keys {
			if !seen[k] {
				seen[k] = true
				out = append(out, MetricRole{Key: k, Role: g.role})
			}
		}
	}
	return out
}

// Keys returns every metric key, primary first, without duplicates.
func (m MetricRefs) Keys() []string {
	all := m.All()
	keys := make([]string, len(all))
	for i, r := range all {
		keys[i] = r.Key
	}
	return keys
}

// MetricRole is a metric key with the role it plays in one experiment.
type MetricRole struct {
	Key  string
	Role string // primary, guardrail, secondary
}

// Experiment is a randomised test of variants on one kind of unit.
type Experiment struct {
	Key        string            `json:"key"`
	Name       string            `json:"name"`
	Hypothesis string            `json:"hypothesis"`
	UnitType   string            `json:"unit_type"`
	Variants   []Variant         `json:"variants"`
	Traffic    float64           `json:"traffic"`
	Layer      string            `json:"layer"`
	LayerRange *LayerRange       `json:"layer_range,omitempty"`
	Salt       string            `json:"salt"`
	Targeting  json.RawMessage   `json:"targeting,omitempty"`
	Overrides  map[string]string `json:"overrides"`
	Metrics    MetricRefs        `json:"metrics"`
	Analysis   Analysis          `json:"analysis"`
	// Allocation is fixed (the variants' weights) or bandit (weights that
	// move towards the best arm; bandit.go).
	Allocation Allocation      `json:"allocation"`
	Bandit     *BanditSettings `json:"bandit,omitempty"`
	Status     Status          `json:"status"`
	// Revision is the configuration revision of the experiment's last change.
	Revision   int64      `json:"revision"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	StoppedAt  *time.Time `json:"stopped_at,omitempty"`
	ArchivedAt *time.Time `json:"archived_at,omitempty"`
}

// Assignable returns the experiment in the form the assign package compiles
// (and the SDK config carries).
func (e *Experiment) Assignable() assign.Experiment {
	return assign.Experiment{
		Key:        e.Key,
		Salt:       e.Salt,
		UnitType:   e.UnitType,
		Variants:   e.Variants,
		Traffic:    e.Traffic,
		Layer:      e.Layer,
		LayerRange: e.LayerRange,
		Targeting:  e.Targeting,
		Overrides:  e.Overrides,
		Running:    e.Status == StatusRunning,
		Sticky:     e.Allocation == AllocationBandit,
	}
}

// HistoryEntry is one change in an experiment's audit log.
type HistoryEntry struct {
	ID      int64                  `json:"id"`
	At      time.Time              `json:"at"`
	Actor   string                 `json:"actor"`
	Action  string                 `json:"action"`
	Changes map[string]FieldChange `json:"changes"`
	// AffectedExperiments, in an audience's audit log, lists the running
	// experiments whose targeting used the audience when it changed.
	AffectedExperiments []string `json:"affected_experiments,omitempty"`
}

// FieldChange is a field's value before and after a change.
type FieldChange struct {
	From any `json:"from"`
	To   any `json:"to"`
}

// ExperimentFilter selects a page of experiments.
type ExperimentFilter struct {
	Status Status // "" = every status but archived; "all" = every one
	Limit  int
	Cursor string
}

// ExperimentStore keeps experiments and their audit log.
type ExperimentStore interface {
	// CreateExperiment stores a validated draft, allocating a layer range
	// when e has a layer but no range (conflict when the layer is full).
	CreateExperiment(ctx context.Context, e *Experiment, layerShare float64, actor string) (*Experiment, error)
	FindExperimentByKey(ctx context.Context, key string) (*Experiment, error)
	ListExperiments(ctx context.Context, f ExperimentFilter) (Page[Experiment], error)
	// UpdateExperiment reads the experiment under a row lock, lets mutate
	// change it (returning a *Error to refuse), then stores it with an audit
	// row for action. A layer range of nil with a layer set is allocated.
	UpdateExperiment(ctx context.Context, key, action, actor string, mutate func(*Experiment) error) (*Experiment, error)
	ExperimentHistory(ctx context.Context, key string, limit int, cursor string) (Page[HistoryEntry], error)
	// ListLiveExperiments returns every experiment that is not archived, and
	// the configuration revision they make up.
	ListLiveExperiments(ctx context.Context) ([]Experiment, int64, error)
	ConfigRevision(ctx context.Context) (int64, error)
}
