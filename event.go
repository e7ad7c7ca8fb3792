package flywheel

import (
	"context"
	"encoding/json"
	"time"
)

// EventType is the kind of an ingested event.
type EventType string

// The event types.
const (
	// EventExposure records that a unit saw a variant; the first one per
	// (experiment, unit) starts the unit's analysis window.
	EventExposure EventType = "exposure"
	// EventTrack is a conversion or metric event, with an optional value.
	EventTrack EventType = "track"
	// EventIdentify links a device (or any id) to a customer id.
	EventIdentify EventType = "identify"
)

// Event is one validated event, ready to store. Unit ids are already
// pseudonymised when the server has an id key.
type Event struct {
	ID         [16]byte
	Type       EventType
	UnitType   string
	UnitID     string
	Timestamp  time.Time
	ReceivedAt time.Time
	Experiment string
	Variant    string
	Name       string // track: the event name
	Value      *float64
	CustomerID string // identify
	Attributes json.RawMessage
	Properties json.RawMessage
}

// EventWriter stores a group of events in one transaction, exactly once: it
// returns the positions (in events) of the events that were new; every
// other one was a duplicate of an id already stored or earlier in events.
type EventWriter interface {
	WriteEvents(ctx context.Context, events []Event) (accepted []int, err error)
}

// UnitRef names one unit.
type UnitRef struct {
	UnitType string `json:"unit_type"`
	UnitID   string `json:"unit_id"`
}

// Erasure counts what erasing a unit removed, per table.
type Erasure struct {
	Units     int64 `json:"units"`
	Events    int64 `json:"events"`
	EventIDs  int64 `json:"event_ids"`
	Exposures int64 `json:"exposures"`
	Aliases   int64 `json:"aliases"`
	Consent   int64 `json:"consent"`
}

// UnitStore keeps what is known of units: identity links, consent, and
// erasure of everything.
type UnitStore interface {
	// SetConsent records a unit's analytics consent and audits it.
	SetConsent(ctx context.Context, u UnitRef, analytics bool, actor string) error
	// OptedOut lists every unit that has withdrawn consent, changed after since.
	OptedOut(ctx context.Context, since time.Time) (out []UnitRef, in []UnitRef, until time.Time, err error)
	// EraseUnit removes every event, exposure, alias and consent record of
	// the unit and of every id linked to it, and audits the counts (never
	// the ids).
	EraseUnit(ctx context.Context, u UnitRef, actor string) (Erasure, error)
	// DescribeUnit reports what is held about a unit: its links, its resolved
	// customer, its consent and how many events and exposures.
	DescribeUnit(ctx context.Context, u UnitRef) (UnitInfo, error)
}

// UnitInfo is what flywheel holds about one unit (a subject access report).
type UnitInfo struct {
	UnitRef
	Customer  string    `json:"customer,omitempty"` // the resolved customer id, for linked ids
	Linked    []UnitRef `json:"linked"`             // ids linked to this unit (or to its customer)
	Analytics *bool     `json:"analytics"`          // consent; null = never set (consented by default)
	Events    int64     `json:"events"`
	Exposures []string  `json:"exposures"` // experiments the unit was exposed to
}
