package flywheel

import (
	"context"
	"math"
	"time"
)

// MetricType says how a metric turns a unit's events into one number.
type MetricType string

// The metric types.
const (
	// MetricConversion is 1 if the unit did the event at least once in its
	// window after first exposure, else 0.
	MetricConversion MetricType = "conversion"
	// MetricMean is the sum of the event's values per unit, averaged over all
	// exposed units, zeros included (e.g. revenue per customer).
	MetricMean MetricType = "mean"
	// MetricCount is the number of events per unit.
	MetricCount MetricType = "count"
	// MetricRatio is sum(numerator values)/sum(denominator values), by the
	// delta method.
	MetricRatio MetricType = "ratio"
	// MetricRetention is 1 if the unit did the event again between FromHours
	// and ToHours after exposure.
	MetricRetention MetricType = "retention"
)

// Direction says which way a metric is good.
type Direction string

// The directions.
const (
	DirectionIncrease Direction = "increase"
	DirectionDecrease Direction = "decrease"
)

// Cap winsorises per-unit values: at a fixed Value, or at the Percentile of
// the per-unit values over all exposed units. At most one is set.
type Cap struct {
	Value      *float64 `json:"value,omitempty"`
	Percentile *float64 `json:"percentile,omitempty"`
}

// DefaultCUPEDHours is the pre-exposure period whose value is the CUPED
// covariate: 14 days.
const DefaultCUPEDHours = 336

// Metric is a named measure that experiments are judged on.
type Metric struct {
	Key         string     `json:"key"`
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Type        MetricType `json:"type"`
	Event       string     `json:"event,omitempty"`
	Numerator   string     `json:"numerator,omitempty"`
	Denominator string     `json:"denominator,omitempty"`
	WindowHours int        `json:"window_hours"`
	FromHours   int        `json:"from_hours,omitempty"`
	ToHours     int        `json:"to_hours,omitempty"`
	CUPEDHours  int        `json:"cuped_hours"`
	Direction   Direction  `json:"direction"`
	Cap         *Cap       `json:"cap,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// Normalize fills a metric's defaults. CUPEDHours is not one of them: 0
// turns CUPED off, and a metric created without cuped_hours gets
// DefaultCUPEDHours where it is created (the API's create handler).
func (m *Metric) Normalize() {
	if m.Direction == "" {
		m.Direction = DirectionIncrease
	}
	if m.Cap != nil && m.Cap.Value == nil && m.Cap.Percentile == nil {
		m.Cap = nil
	}
}

// Validate checks every rule of a metric definition and reports all
// problems at once.
func (m *Metric) Validate() error {
	var p Problems
	if !keyPattern.MatchString(m.Key) {
		p.Add("key", "key must match ^[a-z0-9][a-z0-9_.-]{0,63}$")
	}
	if len(m.Name) > 200 {
		p.Add("name", "name must be at most 200 characters")
	}
	if len(m.Description) > maxTextLen {
		p.Add("description", "description must be at most %d characters", maxTextLen)
	}
	eventName := func(field, v string) {
		if v == "" || len(v) > 128 {
			p.Add(field, "%s must be an event name of 1 to 128 characters", field)
		}
	}
	switch m.Type {
	case MetricConversion, MetricMean, MetricCount:
		eventName("event", m.Event)
	case MetricRatio:
		eventName("numerator", m.Numerator)
		eventName("denominator", m.Denominator)
	case MetricRetention:
		eventName("event", m.Event)
		if m.FromHours < 0 || m.ToHours <= m.FromHours {
			p.Add("to_hours", "retention needs 0 <= from_hours < to_hours")
		}
	default:
		p.Add("type", "type must be one of conversion, mean, count, ratio, retention")
	}
	if m.Type != MetricRatio && (m.Numerator != "" || m.Denominator != "") {
		p.Add("numerator", "numerator and denominator belong to ratio metrics only")
	}
	if m.Type != MetricRetention && (m.FromHours != 0 || m.ToHours != 0) {
		p.Add("from_hours", "from_hours and to_hours belong to retention metrics only")
	}
	if m.WindowHours < 0 || m.WindowHours > 24*365*5 {
		p.Add("window_hours", "window_hours must be in [0, 43800] (0 = no end)")
	}
	if m.CUPEDHours < 0 || m.CUPEDHours > 24*365 {
		p.Add("cuped_hours", "cuped_hours must be in [0, 8760]")
	}
	if m.Direction != DirectionIncrease && m.Direction != DirectionDecrease {
		p.Add("direction", "direction must be increase or decrease")
	}
	if c := m.Cap; c != nil {
		switch {
		case c.Value != nil && c.Percentile != nil:
			p.Add("cap", "cap takes value or percentile, not both")
		case c.Value != nil && (math.IsNaN(*c.Value) || math.IsInf(*c.Value, 0) || *c.Value <= 0):
			p.Add("cap.value", "cap.value must be a positive number")
		case c.Percentile != nil && (math.IsNaN(*c.Percentile) || *c.Percentile <= 0 || *c.Percentile >= 1):
			p.Add("cap.percentile", "cap.percentile must be in (0, 1), e.g. 0.99")
		}
		if m.Type == MetricConversion || m.Type == MetricRetention {
			p.Add("cap", "a cap applies to mean, count and ratio metrics, not to %s", m.Type)
		}
	}
	return p.Err()
}

// MetricPatch is a partial update of a metric; nil fields stay. The key and
// type never change (results already computed would change meaning). An
// explicit JSON null clears a field of MetricNullable (the API sets
// Clear from the body); on any other field it is refused.
type MetricPatch struct {
	Name        *string    `json:"name"`
	Description *string    `json:"description"`
	Event       *string    `json:"event"`
	Numerator   *string    `json:"numerator"`
	Denominator *string    `json:"denominator"`
	WindowHours *int       `json:"window_hours"`
	FromHours   *int       `json:"from_hours"`
	ToHours     *int       `json:"to_hours"`
	CUPEDHours  *int       `json:"cuped_hours"`
	Direction   *Direction `json:"direction"`
	Cap         *Cap       `json:"cap"`
	// Clear names the fields the body set to null, each in MetricNullable.
	Clear map[string]bool `json:"-"`
}

// MetricNullable lists the metric fields a patch may clear with null:
// "cap" removes the cap.
var MetricNullable = []string{"cap"}

// Apply changes m as the patch says; call Validate afterwards.
func (p *MetricPatch) Apply(m *Metric) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	setInt := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	set(&m.Name, p.Name)
	set(&m.Description, p.Description)
	set(&m.Event, p.Event)
	set(&m.Numerator, p.Numerator)
	set(&m.Denominator, p.Denominator)
	setInt(&m.WindowHours, p.WindowHours)
	setInt(&m.FromHours, p.FromHours)
	setInt(&m.ToHours, p.ToHours)
	setInt(&m.CUPEDHours, p.CUPEDHours)
	if p.Direction != nil {
		m.Direction = *p.Direction
	}
	if p.Cap != nil {
		m.Cap = p.Cap
	}
	if p.Clear["cap"] {
		m.Cap = nil
	}
	m.Normalize()
}

// MetricStore keeps metric definitions.
type MetricStore interface {
	CreateMetric(ctx context.Context, m *Metric) (*Metric, error)
	FindMetricByKey(ctx context.Context, key string) (*Metric, error)
	ListMetrics(ctx context.Context, limit int, cursor string) (Page[Metric], error)
	UpdateMetric(ctx context.Context, key string, mutate func(*Metric) error) (*Metric, error)
	// MetricsExist returns the subset of keys that are defined.
	MetricsExist(ctx context.Context, keys []string) (map[string]bool, error)
	// FindMetricsByKeys returns the defined metrics among keys.
	FindMetricsByKeys(ctx context.Context, keys []string) ([]Metric, error)
}
