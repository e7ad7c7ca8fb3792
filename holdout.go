package flywheel

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/flywheel-oss/flywheel/assign"
)

// Holdout keeps a small, stable share of the units of one unit type out of
// a program of experiments (listed by key, or every experiment of a listed
// layer), so that the program's total effect can be read against them.
// A held-out unit gets the control of every covered experiment and is not
// enrolled in them (reason "holdout"); see assign.Holdout for the bucket.
//
// Its results compare the units held out that would have been enrolled in
// a covered experiment (arm "holdout") with the units enrolled in one
// (arm "exposed"), recorded as exposures to "holdout:" + key.
type Holdout struct {
	Key         string     `json:"key"`
	Name        string     `json:"name"`
	Description string     `json:"description"`
	UnitType    string     `json:"unit_type"`
	Fraction    float64    `json:"fraction"`
	Experiments []string   `json:"experiments"`
	Layers      []string   `json:"layers"`
	Metrics     MetricRefs `json:"metrics"`
	Status      Status     `json:"status"`
	// Revision is the configuration revision of the holdout's last change.
	Revision   int64      `json:"revision"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	StoppedAt  *time.Time `json:"stopped_at,omitempty"`
	ArchivedAt *time.Time `json:"archived_at,omitempty"`
}

// Limits of a holdout.
const (
	// MaxHoldoutCovers bounds the experiments plus layers one holdout
	// lists.
	MaxHoldoutCovers = 200
	// MaxLiveHoldouts bounds the holdouts that are not archived.
	MaxLiveHoldouts = 100
)

// Normalize fills the defaults: empty lists instead of nil.
func (h *Holdout) Normalize() {
	for _, l := range []*[]string{&h.Experiments, &h.Layers, &h.Metrics.Primary, &h.Metrics.Guardrails, &h.Metrics.Secondary} {
		if *l == nil {
			*l = []string{}
		}
	}
}

// Validate checks every rule of a holdout definition and reports all
// problems at once. metricExists and experimentExists (nil: unchecked)
// say whether a metric, and an experiment that is not archived, exist.
func (h *Holdout) Validate(metricExists, experimentExists func(string) bool) error {
	var p Problems
	if !keyPattern.MatchString(h.Key) {
		p.Add("key", "key must match ^[a-z0-9][a-z0-9_.-]{0,63}$")
	}
	if strings.TrimSpace(h.Name) == "" {
		p.Add("name", "name is required")
	} else if len(h.Name) > 200 {
		p.Add("name", "name must be at most 200 characters")
	}
	if len(h.Description) > maxTextLen {
		p.Add("description", "description must be at most %d characters", maxTextLen)
	}
	if !unitTypePattern.MatchString(h.UnitType) {
		p.Add("unit_type", "unit_type must match ^[a-z_]{1,32}$ (e.g. customer, device)")
	}
	if math.IsNaN(h.Fraction) || h.Fraction <= 0 || h.Fraction > assign.MaxHoldoutFraction {
		p.Add("fraction", "fraction must be in (0, %g]: the share of units held out", assign.MaxHoldoutFraction)
	}
	if len(h.Experiments)+len(h.Layers) == 0 {
		p.Add("experiments", "a holdout covers at least one experiment or layer (experiments, layers)")
	}
	if n := len(h.Experiments) + len(h.Layers); n > MaxHoldoutCovers {
		p.Add("experiments", "a holdout may list at most %d experiments and layers together, got %d", MaxHoldoutCovers, n)
	}
	for _, l := range []struct {
		name   string
		keys   []string
		exists func(string) bool
		what   string
	}{{"experiments", h.Experiments, experimentExists, "experiment"}, {"layers", h.Layers, nil, "layer"}} {
		seen := map[string]bool{}
		for i, k := range l.keys {
			f := fmt.Sprintf("%s[%d]", l.name, i)
			switch {
			case !keyPattern.MatchString(k):
				p.Add(f, "%s must match ^[a-z0-9][a-z0-9_.-]{0,63}$", l.what)
			case seen[k]:
				p.Add(f, "%s %q is listed twice", l.what, k)
			case l.exists != nil && !l.exists(k):
				p.Add(f, "unknown %s %q (or archived)", l.what, k)
			}
			seen[k] = true
		}
	}
	validateMetricRefs(&p, h.Metrics, metricExists)
	if !h.Status.Valid() {
		p.Add("status", "unknown status %q", h.Status)
	}
	return p.Err()
}

// Covers reports whether the holdout covers experiment e.
func (h *Holdout) Covers(e *Experiment) bool {
	return slices.Contains(h.Experiments, e.Key) || (e.Layer != "" && slices.Contains(h.Layers, e.Layer))
}

// Assignable returns the holdout as the assign package compiles it (and
// the SDK config carries it).
func (h *Holdout) Assignable() assign.Holdout {
	return assign.Holdout{Key: h.Key, UnitType: h.UnitType, Fraction: h.Fraction,
		Experiments: h.Experiments, Layers: h.Layers, Running: h.Status == StatusRunning}
}

// AnalysisKey is the key the holdout's exposures are recorded and
// aggregated under: "holdout:" + key, which no experiment key can be.
func (h *Holdout) AnalysisKey() string { return assign.HoldoutPrefix + h.Key }

// Analyzed returns the holdout as the experiment its results are computed
// from: key AnalysisKey, arms "holdout" (the control, weight fraction)
// and "exposed" (weight 1 - fraction), fixed-horizon. Results, CUPED, SRM
// and the trust checks are an experiment's, on these arms.
func (h *Holdout) Analyzed() *Experiment {
	e := &Experiment{
		Key: h.AnalysisKey(), Name: h.Name, UnitType: h.UnitType, Traffic: 1,
		Variants: []Variant{{Key: assign.HoldoutHeldOut, Weight: h.Fraction}, {Key: assign.HoldoutExposed, Weight: 1 - h.Fraction}},
		Metrics:  h.Metrics, Analysis: AnalysisFixed, Status: h.Status, Revision: h.Revision,
		CreatedAt: h.CreatedAt, UpdatedAt: h.UpdatedAt, StartedAt: h.StartedAt, StoppedAt: h.StoppedAt, ArchivedAt: h.ArchivedAt,
	}
	e.Normalize()
	return e
}

// Start moves a draft holdout to running: from then on it holds units out.
func (h *Holdout) Start(now time.Time) error {
	if h.Status != StatusDraft {
		return Errorf(CodeConflict, "only a draft holdout can start; %q is %s (a stopped holdout cannot restart: create a new one so that its analysis starts clean)", h.Key, h.Status)
	}
	h.Status, h.StartedAt = StatusRunning, &now
	return nil
}

// Stop moves a running holdout to stopped: its units are released into
// the covered experiments, and its results stay readable.
func (h *Holdout) Stop(now time.Time) error {
	if h.Status != StatusRunning {
		return Errorf(CodeConflict, "only a running holdout can stop; %q is %s", h.Key, h.Status)
	}
	h.Status, h.StoppedAt = StatusStopped, &now
	return nil
}

// Archive hides a draft or stopped holdout from listings by default.
func (h *Holdout) Archive(now time.Time) error {
	if h.Status != StatusDraft && h.Status != StatusStopped {
		return Errorf(CodeConflict, "only a draft or stopped holdout can be archived; %q is %s (stop it first)", h.Key, h.Status)
	}
	h.Status, h.ArchivedAt = StatusArchived, &now
	return nil
}

// HoldoutPatch is the body of PATCH /v1/holdouts/{key}: the fields to
// change; a field left out keeps its value.
type HoldoutPatch struct {
	Name        *string     `json:"name"`
	Description *string     `json:"description"`
	UnitType    *string     `json:"unit_type"`
	Fraction    *float64    `json:"fraction"`
	Experiments *[]string   `json:"experiments"`
	Layers      *[]string   `json:"layers"`
	Metrics     *MetricRefs `json:"metrics"`
}

// Apply changes h as the patch says and refuses (409) what h's status
// does not allow: a running holdout may raise its fraction (never lower
// it: the units it held out would join the program mid-way and count in
// both arms), change its name, description, metrics and what it covers;
// its unit type is fixed once started. An archived holdout does not
// change. It does not validate the result.
func (p *HoldoutPatch) Apply(h *Holdout) error {
	if h.Status == StatusArchived {
		return Errorf(CodeConflict, "holdout %q is archived and cannot change", h.Key)
	}
	if p.Name != nil {
		h.Name = *p.Name
	}
	if p.Description != nil {
		h.Description = *p.Description
	}
	if p.UnitType != nil && *p.UnitType != h.UnitType {
		if h.Status != StatusDraft {
			return &Error{Code: CodeConflict, Field: "unit_type", Message: fmt.Sprintf("the unit type of a %s holdout cannot change: create a new one", h.Status)}
		}
		h.UnitType = *p.UnitType
	}
	if p.Fraction != nil && *p.Fraction != h.Fraction {
		switch {
		case h.Status == StatusStopped:
			return &Error{Code: CodeConflict, Field: "fraction", Message: "the fraction of a stopped holdout cannot change"}
		case h.Status == StatusRunning && *p.Fraction < h.Fraction:
			return &Error{Code: CodeConflict, Field: "fraction", Message: fmt.Sprintf("a running holdout's fraction may only grow (from %g): lowering it would move held-out units into the program and into both arms; stop it and create a new one", h.Fraction)}
		}
		h.Fraction = *p.Fraction
	}
	if p.Experiments != nil {
		h.Experiments = *p.Experiments
	}
	if p.Layers != nil {
		h.Layers = *p.Layers
	}
	if p.Metrics != nil {
		h.Metrics = *p.Metrics
	}
	h.Normalize()
	return nil
}

// DiffHoldouts returns the definition fields (JSON names) whose values
// differ between a and b.
func DiffHoldouts(a, b *Holdout) map[string]FieldChange {
	out := map[string]FieldChange{}
	add := func(name string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			out[name] = FieldChange{From: x, To: y}
		}
	}
	add("name", a.Name, b.Name)
	add("description", a.Description, b.Description)
	add("unit_type", a.UnitType, b.UnitType)
	add("fraction", a.Fraction, b.Fraction)
	add("experiments", a.Experiments, b.Experiments)
	add("layers", a.Layers, b.Layers)
	add("metrics", a.Metrics, b.Metrics)
	add("status", a.Status, b.Status)
	return out
}

// HoldoutFilter selects a page of holdouts.
type HoldoutFilter struct {
	Status Status // "" = every status but archived; "all" = every one
	Limit  int
	Cursor string
}

// HoldoutStore keeps holdouts and their audit log.
type HoldoutStore interface {
	// CreateHoldout stores a validated draft; experimentsExist is checked
	// in the store's transaction.
	CreateHoldout(ctx context.Context, h *Holdout, metricExists func(string) bool, actor string) (*Holdout, error)
	FindHoldoutByKey(ctx context.Context, key string) (*Holdout, error)
	ListHoldouts(ctx context.Context, f HoldoutFilter) (Page[Holdout], error)
	// UpdateHoldout reads the holdout under a row lock, lets mutate change
	// it (a *Error refuses), validates it against the experiments that are
	// not archived, then stores it with an audit row for action.
	UpdateHoldout(ctx context.Context, key, action, actor string, mutate func(*Holdout) error, metricExists func(string) bool) (*Holdout, error)
	HoldoutHistory(ctx context.Context, key string, limit int, cursor string) (Page[HistoryEntry], error)
	// LiveHoldouts returns every holdout that is not archived.
	LiveHoldouts(ctx context.Context) ([]Holdout, error)
}
