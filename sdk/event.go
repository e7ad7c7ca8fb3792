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
// Close. Nothing is sent for a unit that did not consent (Unit.OptedOut,
// WithConsent, or opted out on the server), and that is not an error.
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
	if !c.consents(&unit) || c.optOuts.has(unitType, id) {
		return nil // the server would drop it on arrival
	}
	ev := outEvent{typ: "track", unitType: unitType, unitID: id, event: name, value: value, hasValue: true, properties: properties}
	if err := c.enqueue(&ev); err != nil { // the error path: errors.As makes obj escape
		if obj := (*errObject)(nil); errors.As(err, &obj) {
			return fmt.Errorf("sdk: track %q: %w", name, obj)
		}
		return err
	}
	return nil
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
	if !c.consents(&Unit{DeviceID: deviceID, CustomerID: customerID}) || c.optOuts.has(UnitDevice, deviceID) {
		return nil // the server would drop it on arrival
	}
	return c.enqueue(&outEvent{typ: "identify", unitType: UnitDevice, unitID: deviceID, customerID: customerID})
}

// logExposure queues the exposure of an enrolled assignment. It runs once
// per (experiment, unit, variant) thanks to the exposure cache, on the
// app's request path: it copies the event into the queue, and allocates
// nothing.
func (c *Client) logExposure(e *experiment, unit *Unit, unitID string, variant string) {
	c.logExposureAs(e.c.Key(), e.unitType, unit, unitID, variant)
}

// logExposureAs queues an exposure to experiment (an experiment's key, or
// a holdout's "holdout:" + key) under the given unit type and id.
func (c *Client) logExposureAs(experiment, unitType string, unit *Unit, unitID string, variant string) {
	ev := outEvent{typ: "exposure", experiment: experiment, variant: variant, unitType: unitType, unitID: unitID, attributes: unit.Attributes}
	err := c.enqueue(&ev)
	if err != nil { // the error path: errors.As makes obj escape
		if obj := (*errObject)(nil); errors.As(err, &obj) {
			// Attributes that cannot be sent do not cost the exposure.
			c.log.Warn("flywheel: exposure sent without attributes: they cannot be sent as JSON", "experiment", ev.experiment, "err", obj.err)
			ev.attributes = nil
			err = c.enqueue(&ev)
		}
	}
	if err == nil { // after Close, exposures are silently not logged
		c.stats.exposures.Add(1)
	}
}

// recordStack is the room for a record on the caller's stack. A record
// estimated larger (recordSize) is built in a pooled buffer instead, so
// that it does not allocate either.
const recordStack = 512

// recordSize estimates the size of ev's record, counting each attribute or
// property as a 12-byte key with a 24-byte string: an exposure with half a
// dozen attributes is built on the stack. A record larger than its
// estimate outgrows the stack: it allocates, once or twice.
func recordSize(ev *outEvent) int {
	const entry = 1 + 4 + 12 + 4 + 24
	return recHeader + len(ev.typ) + len(ev.experiment) + len(ev.variant) + len(ev.unitType) + len(ev.unitID) +
		len(ev.event) + len(ev.customerID) + entry*(len(ev.attributes)+len(ev.properties))
}

// enqueue records ev, with the time of the call, and queues it. Its id and
// JSON are made later, by the delivery goroutine (record.go).
func (c *Client) enqueue(ev *outEvent) error {
	if c.queue == nil { // offline
		if c.closed.Load() {
			return ErrClosed
		}
		c.stats.queued.Add(1)
		c.stats.dropped.Add(1)
		return nil
	}
	now := c.clock.now()
	if recordSize(ev) <= recordStack {
		var stack [recordStack]byte
		rec, err := appendRecord(stack[:0], now, ev)
		if err != nil {
			return fmt.Errorf("sdk: record %s event: %w", ev.typ, err)
		}
		return c.push(rec)
	}
	sp := scratch.Get().(*[]byte)
	rec, err := appendRecord((*sp)[:0], now, ev)
	if err == nil {
		err = c.push(rec)
	} else {
		err = fmt.Errorf("sdk: record %s event: %w", ev.typ, err)
	}
	putScratch(sp, rec)
	return err
}

// push queues a record.
func (c *Client) push(rec []byte) error {
	waiting, overflowed, ok := c.queue.push(rec) // which counts it, and what it pushes out
	if !ok {
		return ErrClosed
	}
	if overflowed && !c.overflowing.Load() && c.overflowing.CompareAndSwap(false, true) {
		c.log.Warn("flywheel: event buffer full: dropping the oldest events until the server takes them again; counted in Stats.Overflowed",
			"buffer", c.opts.bufferSize)
	}
	// A push adds one waiting event, so the count always passes through
	// batchSize on its way up; the delivery loop then sends batches until
	// fewer wait. One wake-up per batch, not one per event while the
	// delivery is busy.
	if waiting == c.opts.batchSize {
		c.delivery.kick()
	}
	return nil
}
