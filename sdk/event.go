package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
)

// wireEvent is one event of POST /v1/events (API.md, "Events").
type wireEvent struct {
	ID         uuid.UUID       `json:"id"`
	Type       string          `json:"type"`
	Experiment string          `json:"experiment,omitempty"`
	Variant    string          `json:"variant,omitempty"`
	UnitType   string          `json:"unit_type"`
	UnitID     string          `json:"unit_id"`
	Timestamp  time.Time       `json:"timestamp"`
	Attributes json.RawMessage `json:"attributes,omitempty"`
	Event      string          `json:"event,omitempty"`
	Value      *float64        `json:"value,omitempty"`
	Properties json.RawMessage `json:"properties,omitempty"`
	CustomerID string          `json:"customer_id,omitempty"`
}

// Errors of Track and Identify.
var (
	// ErrClosed is returned for events recorded after Close began.
	ErrClosed = errors.New("sdk: client is closed")
	// ErrNoUnitID is returned by Track for a unit without any id.
	ErrNoUnitID = errors.New("sdk: unit has no id")
)

// maxObjectBytes is the server's limit on attributes and properties.
const maxObjectBytes = 16 << 10

// Track records that unit did the event named name (e.g. "purchase"), with a
// value (e.g. revenue; 0 when the event has none) and optional properties
// (a JSON object). The event is sent under the unit's customer id, else its
// device id, else its id of the first other unit type in sorted order; for
// customer experiments, events under a device id linked by Identify count
// for its customer. Track never waits for the network: it queues the event
// and returns. It returns an error only for an event that could never be
// accepted (no unit id, no name, a value that is not finite, properties
// that cannot be encoded as a JSON object within 16 KiB) and ErrClosed after
// Close. Nothing is sent for a unit that did not consent, and that is not an
// error.
func (c *Client) Track(ctx context.Context, unit Unit, name string, value float64, properties map[string]any) error {
	unitType, id := unit.primaryID()
	switch {
	case id == "":
		return ErrNoUnitID
	case name == "":
		return errors.New("sdk: track: event name is empty")
	case math.IsNaN(value) || math.IsInf(value, 0):
		return fmt.Errorf("sdk: track %q: value %v is not finite", name, value)
	}
	if !c.consents(&unit) {
		return nil
	}
	ev := wireEvent{Type: "track", UnitType: unitType, UnitID: id, Event: name, Value: &value}
	if len(properties) > 0 {
		raw, err := json.Marshal(properties)
		if err != nil {
			return fmt.Errorf("sdk: track %q: properties: %w", name, err)
		}
		if len(raw) > maxObjectBytes {
			return fmt.Errorf("sdk: track %q: properties are %d bytes of JSON, more than %d", name, len(raw), maxObjectBytes)
		}
		ev.Properties = raw
	}
	return c.enqueue(&ev)
}

// Identify links a device id to a customer id (an "identify" event): for
// experiments on customers, the device's events then count for the
// customer, on every device. It never waits for the network, returns
// ErrClosed after Close, and sends nothing when the unit {DeviceID,
// CustomerID} did not consent (see WithConsent).
func (c *Client) Identify(ctx context.Context, deviceID, customerID string) error {
	if deviceID == "" || customerID == "" {
		return errors.New("sdk: identify: device id and customer id are both required")
	}
	if !c.consents(&Unit{DeviceID: deviceID, CustomerID: customerID}) {
		return nil
	}
	return c.enqueue(&wireEvent{Type: "identify", UnitType: UnitDevice, UnitID: deviceID, CustomerID: customerID})
}

// logExposure queues the exposure of an enrolled assignment. It runs once
// per (experiment, unit, variant) thanks to the exposure cache, so it may
// allocate.
func (c *Client) logExposure(e *experiment, unit *Unit, unitID string, variant string) {
	ev := wireEvent{Type: "exposure", Experiment: e.c.Key(), Variant: variant, UnitType: e.unitType, UnitID: unitID}
	if len(unit.Attributes) > 0 {
		raw, err := json.Marshal(unit.Attributes)
		switch {
		case err != nil:
			c.log.Warn("flywheel: exposure sent without attributes: they cannot be encoded as JSON", "experiment", ev.Experiment, "err", err)
		case len(raw) > maxObjectBytes:
			c.log.Warn("flywheel: exposure sent without attributes: more than 16 KiB of JSON", "experiment", ev.Experiment, "bytes", len(raw))
		default:
			ev.Attributes = raw
		}
	}
	if c.enqueue(&ev) == nil { // after Close, exposures are silently not logged
		c.stats.exposures.Add(1)
	}
}

// enqueue gives ev its id and timestamp, encodes it and queues it. The id
// is a time-ordered UUIDv7, made once here and reused on every retry.
func (c *Client) enqueue(ev *wireEvent) error {
	if c.queue == nil { // offline
		if c.closed.Load() {
			return ErrClosed
		}
		c.stats.queued.Add(1)
		c.stats.dropped.Add(1)
		return nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("sdk: event id: %w", err)
	}
	ev.ID, ev.Timestamp = id, time.Now().UTC()
	raw, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("sdk: encode %s event: %w", ev.Type, err)
	}
	waiting, overflowed, ok := c.queue.push(raw)
	if !ok {
		return ErrClosed
	}
	c.stats.queued.Add(1)
	if overflowed {
		c.stats.dropped.Add(1)
		c.stats.overflowed.Add(1)
		if !c.overflowing.Load() && c.overflowing.CompareAndSwap(false, true) {
			c.log.Warn("flywheel: event buffer full: dropping the oldest events until the server takes them again; counted in Stats.Overflowed",
				"buffer", c.opts.bufferSize)
		}
	}
	if waiting >= c.opts.batchSize {
		c.delivery.kick()
	}
	return nil
}
