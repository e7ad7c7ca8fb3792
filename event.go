package flywheel

import (
	"context"
	"crypto/sha256"
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

// Digest is the one-way form of a unit that an opt-out tombstone keeps
// after the unit is erased: SHA-256(unit_type + ":" + unit_id), over the
// id as stored (pseudonymised when ids are). It holds no id.
func (u UnitRef) Digest() [32]byte {
	return sha256.Sum256([]byte(u.UnitType + ":" + u.UnitID))
}

// Erasure counts what erasing a unit removed, per table, and the opt-outs
// kept as tombstones (OptOutsKept): an opted-out unit that comes back stays
// opted out, through a digest that holds no id.
type Erasure struct {
	Units       int64 `json:"units"`
	Events      int64 `json:"events"`
	EventIDs    int64 `json:"event_ids"`
	Exposures   int64 `json:"exposures"`
	Aliases     int64 `json:"aliases"`
	Consent     int64 `json:"consent"`
	OptOutsKept int64 `json:"opt_outs_kept"`
}

// The states of an erasure request.
const (
	ErasurePending = "pending"
	ErasureDone    = "done"
)

// ErasureStatus is an erasure request: pending until carried out (in one
// transaction, never in part), then done with what it removed. It never
// holds the unit's id.
type ErasureStatus struct {
	ID          string     `json:"id"`
	Status      string     `json:"status"`
	UnitType    string     `json:"unit_type"`
	RequestedAt time.Time  `json:"requested_at"`
	DoneAt      *time.Time `json:"done_at,omitempty"`
	Erased      *Erasure   `json:"erased,omitempty"`
}

// ConsentChanges are the consent changes since a time, for the in-memory
// opt-out set: units now opted out, units opted back in, opt-outs kept as
// tombstones of erased units (Digest), and the time to ask from next.
type ConsentChanges struct {
	Out, In    []UnitRef
	Tombstones [][32]byte
	Until      time.Time
}

// TokenChange is one change of the opt-out set as SDKs see it: a unit's
// assign.OptOutToken, opted out or back in. At, Kind and Token order the
// changes (Kind 0 is a consent record, 1 a tombstone); a cursor is the last
// change read.
type TokenChange struct {
	Token    uint64
	OptedOut bool
	At       time.Time
	Kind     int
}

// UnitStore keeps what is known of units: identity links, consent, and
// erasure of everything.
type UnitStore interface {
	// SetConsent records a unit's analytics consent and audits it. sdkToken
	// is assign.OptOutToken of the raw id (0 when unknown), which SDKs read.
	// Opting in removes an opt-out tombstone of the unit.
	SetConsent(ctx context.Context, u UnitRef, analytics bool, sdkToken uint64, actor string) error
	// OptedOut lists the consent changes after since.
	OptedOut(ctx context.Context, since time.Time) (ConsentChanges, error)
	// OptOutTokens lists up to limit changes of the SDKs' opt-out set after
	// the change at (at, kind, token), in order.
	OptOutTokens(ctx context.Context, at time.Time, kind int, token uint64, limit int) ([]TokenChange, error)
	// RequestErasure records the erasure of the unit and every id linked to
	// it (every event, exposure, alias and consent record, keeping only a
	// tombstone, UnitRef.Digest, of each opt-out; audited with the counts,
	// never the ids) and carries it out if it can start within wait; else
	// it stays pending and is carried out in the background.
	RequestErasure(ctx context.Context, u UnitRef, actor string, wait time.Duration) (ErasureStatus, error)
	// FindErasure returns an erasure request by id.
	FindErasure(ctx context.Context, id string) (ErasureStatus, error)
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
