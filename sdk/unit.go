package sdk

import "slices"

// Unit types with their own fields in Unit.
const (
	UnitCustomer = "customer"
	UnitDevice   = "device"
)

// Unit is who is being assigned or tracked: its ids, one per unit type, and
// its attributes. An experiment randomises on one unit type (its
// unit_type), so the same Unit can be assigned to customer-level and
// device-level experiments.
type Unit struct {
	// CustomerID is the unit's id of type "customer" (a signed-in user).
	CustomerID string
	// DeviceID is the unit's id of type "device" (e.g. a cookie or an app
	// install id).
	DeviceID string
	// IDs holds ids of other unit types (e.g. "company" -> "acme"). It may
	// also hold "customer" or "device"; CustomerID and DeviceID win.
	IDs map[string]string
	// Attributes are what targeting conditions test (as encoding/json
	// decodes an object: string, float64, bool, nil, []any, map[string]any;
	// Go integers are accepted as numbers). They are sent with the unit's
	// exposures, as the segments results can be broken down by. The client
	// reads them during the call only.
	Attributes map[string]any
	// OptedOut marks a unit that did not consent to analytics: it is never
	// enrolled and nothing about it is sent (see also WithConsent).
	OptedOut bool
}

// ID returns the unit's id of the given type, or "" when it has none.
func (u *Unit) ID(unitType string) string {
	switch unitType {
	case UnitCustomer:
		if u.CustomerID != "" {
			return u.CustomerID
		}
	case UnitDevice:
		if u.DeviceID != "" {
			return u.DeviceID
		}
	}
	return u.IDs[unitType]
}

// primaryID returns the id Track sends events under: the customer id, else
// the device id, else the id of the first other unit type in sorted order.
func (u *Unit) primaryID() (unitType, id string) {
	if id := u.ID(UnitCustomer); id != "" {
		return UnitCustomer, id
	}
	if id := u.ID(UnitDevice); id != "" {
		return UnitDevice, id
	}
	types := make([]string, 0, len(u.IDs))
	for t, id := range u.IDs {
		if id != "" {
			types = append(types, t)
		}
	}
	if len(types) == 0 {
		return "", ""
	}
	slices.Sort(types)
	return types[0], u.IDs[types[0]]
}
