package flywheel

import (
	"bytes"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"time"
)

// ExperimentPatch is a partial update: a nil field is left as it is. An
// explicit JSON null clears a field of ExperimentNullable (the API sets
// Clear from the body); on any other field it is refused. Targeting is raw,
// so its null also arrives as the JSON null and clears it.
type ExperimentPatch struct {
	Name       *string            `json:"name"`
	Hypothesis *string            `json:"hypothesis"`
	UnitType   *string            `json:"unit_type"`
	Variants   *[]Variant         `json:"variants"`
	Traffic    *float64           `json:"traffic"`
	Layer      *string            `json:"layer"`
	LayerRange *LayerRange        `json:"layer_range"`
	Salt       *string            `json:"salt"`
	Targeting  json.RawMessage    `json:"targeting"`
	Overrides  *map[string]string `json:"overrides"`
	Metrics    *MetricRefs        `json:"metrics"`
	Analysis   *Analysis          `json:"analysis"`
	Allocation *Allocation        `json:"allocation"`
	Bandit     *BanditSettings    `json:"bandit"`
	// Clear names the fields the body set to null, each in
	// ExperimentNullable.
	Clear map[string]bool `json:"-"`
}

// ExperimentNullable lists the experiment fields a patch may clear with
// null: "targeting" (every unit is eligible), "overrides" (none), and
// "layer_range" (flywheel allocates a free range of the layer again).
var ExperimentNullable = []string{"targeting", "overrides", "layer_range"}

// mutableWhile lists, per status, the fields a patch may change.
var mutableWhile = map[Status]map[string]bool{
	StatusRunning: {"name": true, "hypothesis": true, "metrics": true, "traffic": true},
	StatusStopped: {"name": true, "hypothesis": true, "metrics": true},
}

// Apply changes e as the patch says and refuses (409) a change that e's
// status does not allow. It does not validate the result; call Validate.
func (p *ExperimentPatch) Apply(e *Experiment) error {
	before := *e
	if p.Name != nil {
		e.Name = *p.Name
	}
	if p.Hypothesis != nil {
		e.Hypothesis = *p.Hypothesis
	}
	if p.UnitType != nil {
		e.UnitType = *p.UnitType
	}
	if p.Variants != nil {
		e.Variants = *p.Variants
	}
	if p.Traffic != nil {
		e.Traffic = *p.Traffic
	}
	if p.Layer != nil {
		if *p.Layer != e.Layer && p.LayerRange == nil {
			e.LayerRange = nil // a new layer gets a new range
		}
		e.Layer = *p.Layer
	}
	if p.LayerRange != nil {
		r := *p.LayerRange
		e.LayerRange = &r
	}
	if p.Clear["layer_range"] {
		e.LayerRange = nil
	}
	if p.Salt != nil {
		e.Salt = *p.Salt
		if e.Salt == "" {
			e.Salt = e.Key
		}
	}
	if p.Targeting != nil {
		e.Targeting = p.Targeting
	}
	if p.Overrides != nil {
		e.Overrides = *p.Overrides
	}
	if p.Clear["overrides"] {
		e.Overrides = map[string]string{}
	}
	if p.Metrics != nil {
		e.Metrics = *p.Metrics
	}
	if p.Analysis != nil {
		e.Analysis = *p.Analysis
	}
	if p.Allocation != nil {
		e.Allocation = *p.Allocation
		if e.Allocation != AllocationBandit && p.Bandit == nil {
			e.Bandit = nil
		}
	}
	if p.Bandit != nil {
		b := *p.Bandit
		e.Bandit = &b
	}
	e.Normalize()
	if e.Status == StatusRunning && e.Allocation == AllocationBandit && !slices.Equal(before.Metrics.Primary, e.Metrics.Primary) {
		*e = before
		return &Error{Code: CodeConflict, Field: "metrics.primary", Message: "a running bandit cannot change its primary metric: its weights were learnt on it; stop it and create a new experiment"}
	}
	if e.Status == StatusDraft {
		return nil
	}
	allowed := mutableWhile[e.Status]
	var refused []string
	for f := range DiffExperiments(&before, e) {
		if !allowed[f] {
			refused = append(refused, f)
		}
	}
	if len(refused) == 0 {
		return nil
	}
	sort.Strings(refused)
	*e = before
	msg := "an archived experiment cannot change"
	if e.Status == StatusRunning {
		msg = "a running experiment may change only traffic, name, hypothesis and metrics: changing " +
			strings.Join(refused, ", ") + " would move units between variants or mix two designs in one analysis; stop it and create a new experiment"
	} else if e.Status == StatusStopped {
		msg = "a stopped experiment may change only name, hypothesis and metrics, not " + strings.Join(refused, ", ")
	}
	return &Error{Code: CodeConflict, Message: msg, Field: refused[0]}
}

// Start moves a draft to running.
func (e *Experiment) Start(now time.Time) error {
	if e.Status != StatusDraft {
		return Errorf(CodeConflict, "only a draft can start; %q is %s (a stopped experiment cannot restart: create a new one so that its analysis starts clean)", e.Key, e.Status)
	}
	e.Status = StatusRunning
	e.StartedAt = &now
	return nil
}

// Stop moves a running experiment to stopped: it enrols nobody from then
// on, and its results stay readable.
func (e *Experiment) Stop(now time.Time) error {
	if e.Status != StatusRunning {
		return Errorf(CodeConflict, "only a running experiment can stop; %q is %s", e.Key, e.Status)
	}
	e.Status = StatusStopped
	e.StoppedAt = &now
	return nil
}

// Archive hides a draft or stopped experiment from listings by default and
// frees its layer range.
func (e *Experiment) Archive(now time.Time) error {
	if e.Status != StatusDraft && e.Status != StatusStopped {
		return Errorf(CodeConflict, "only a draft or stopped experiment can be archived; %q is %s (stop it first)", e.Key, e.Status)
	}
	e.Status = StatusArchived
	e.ArchivedAt = &now
	return nil
}

// DiffExperiments returns the definition fields (JSON names) whose values
// differ between a and b, with both values. Timestamps and revision are not
// definition fields.
func DiffExperiments(a, b *Experiment) map[string]FieldChange {
	fa, fb := fieldsOf(a), fieldsOf(b)
	out := map[string]FieldChange{}
	for k, va := range fa {
		if vb := fb[k]; !bytes.Equal(va, vb) {
			out[k] = FieldChange{From: va, To: vb}
		}
	}
	for k, vb := range fb {
		if _, ok := fa[k]; !ok {
			out[k] = FieldChange{From: nil, To: vb}
		}
	}
	return out
}

func fieldsOf(e *Experiment) map[string]json.RawMessage {
	c := *e
	c.Revision, c.CreatedAt, c.UpdatedAt = 0, time.Time{}, time.Time{}
	c.StartedAt, c.StoppedAt, c.ArchivedAt = nil, nil, nil
	raw, _ := json.Marshal(c) // plain data: cannot fail
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	for _, k := range []string{"revision", "created_at", "updated_at"} {
		delete(m, k)
	}
	if t, ok := m["targeting"]; ok {
		// Compare conditions by meaning, not by spacing.
		var v any
		if json.Unmarshal(t, &v) == nil {
			m["targeting"], _ = json.Marshal(v)
		}
	}
	return m
}
