package api

// Fuzz targets for every JSON body the API decodes. Each checks what a
// decoder owes its callers: no panic; a refusal is an invalid_argument that
// names the field whenever the body is a well-formed object; what is
// accepted and valid is what the rest of the system accepts (the
// assignment compiler for experiments); and decode, encode, decode gives
// the same value.

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
	"github.com/flywheel-oss/flywheel/assign"
)

// checkRefusal: err is an invalid_argument with a message, naming a field
// when data is a well-formed JSON object (only a body that is not one may
// be refused as a whole).
func checkRefusal(t *testing.T, data []byte, err error) {
	t.Helper()
	var fe *flywheel.Error
	if !errors.As(err, &fe) || fe.Code != flywheel.CodeInvalidArgument || fe.Message == "" {
		t.Fatalf("body %q refused with %#v: want an invalid_argument with a message", data, err)
	}
	if fe.Field == "" && json.Valid(data) && bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) {
		t.Fatalf("body %q refused with %v, naming no field", data, err)
	}
	for _, d := range fe.Details {
		if d.Field == "" || d.Message == "" || d.Code != flywheel.CodeInvalidArgument {
			t.Fatalf("body %q: problem %+v names no field", data, d)
		}
	}
}

// checkAccepted: an accepted body names only v's fields at its top level,
// exactly as spelt there, and holds no key twice in any object.
func checkAccepted(t *testing.T, data []byte, v any) {
	t.Helper()
	typ := reflect.TypeOf(v)
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	names := map[string]bool{}
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		names[name] = true
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		keys  map[string]bool // nil in an array
		value bool            // in an object: a value comes next
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil && !stack[n-1].value {
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				continue
			}
			k := tok.(string)
			if stack[n-1].keys[k] {
				t.Fatalf("accepted %q holds the key %q twice in one object", data, k)
			}
			if n == 1 && !names[k] {
				t.Fatalf("accepted %q names %q, not a field of %s", data, k, typ)
			}
			stack[n-1].keys[k], stack[n-1].value = true, true
			continue
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil {
			stack[n-1].value = false
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

// encode is JSON as a client would resend it (no HTML escaping, which
// would change sizes).
func encode(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("encode %#v: %v", v, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// seedBodies are bodies of every request, valid and not.
var seedBodies = []string{
	`{"key":"checkout-button","name":"Green checkout button","hypothesis":"A green button raises purchases","unit_type":"customer",
	  "variants":[{"key":"control","weight":0.5},{"key":"green","weight":0.5,"payload":{"color":"#0a0"}}],"traffic":1.0,"layer":"",
	  "targeting":{"country":{"$in":["FR","BE"]},"stage":"prospect"},"overrides":{"qa-customer-1":"green"},
	  "metrics":{"primary":["purchase"],"guardrails":["refund"],"secondary":[]},"analysis":"fixed"}`,
	`{"key":"l1","unit_type":"device","variants":[{"key":"a","weight":0.3333333333},{"key":"b","weight":0.6666666667}],"layer":"checkout","layer_range":[0,3000],"salt":"s","analysis":"sequential"}`,
	`{"key":"l2","unit_type":"customer","variants":[{"key":"a","weight":1e-9},{"key":"b","weight":0.999999999}],"layer":"l","layer_share":0.25,"traffic":0}`,
	`{"Key":"x"}`, `{"key":"x","key":"y"}`, `{"key":"x","variants":[{"key":"a","weight":NaN}]}`, `{"targeting":{"a":1,"a":2}}`,
	`{"key":"purchase","event":"purchase","type":"conversion","window_hours":168,"direction":"increase"}`,
	`{"key":"revenue","name":"Revenue","description":"d","event":"purchase","type":"mean","cap":{"percentile":0.99},"cuped_hours":0}`,
	`{"key":"aov","type":"ratio","numerator":"purchase","denominator":"order","cap":{"value":100}}`,
	`{"key":"d7","type":"retention","event":"visit","from_hours":144,"to_hours":192}`,
	`{"traffic":0.5,"name":"Green button, ramped","targeting":null,"metrics":{"primary":["purchase"]}}`,
	`{"window_hours":24,"direction":"decrease","cap":{}}`,
	`{"unit_type":"customer","unit_id":"c-42","attributes":{"country":"FR","n":[1,2.5,null,{"x":true}]},"experiments":["checkout-button"],"log_exposure":true}`,
	`{"analytics":false}`, `{"analytics":"no"}`,
	`{"type":"conversion","baseline_rate":0.05,"relative_mde":0.1}`, `{"type":"mean","baseline_mean":10,"sd":30,"units_per_arm":5000,"alpha":0.1,"power":0.9,"variants":3}`,
	``, `null`, `[]`, `{}`, `{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`, "{\"name\":\"\xff\"}", `{"name":"\u0000"}`,
}

func FuzzExperimentBody(f *testing.F) {
	for _, s := range seedBodies {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req createExperimentRequest
		if err := decodeBody(data, &req); err != nil {
			checkRefusal(t, data, err)
			return
		}
		checkAccepted(t, data, &req)
		e, err := req.experiment()
		if err != nil {
			checkRefusal(t, data, err)
			return
		}
		if err := e.Validate(nil); err != nil {
			checkRefusal(t, data, err)
			return
		}
		// Valid: the assignment compiler, which servers and SDKs run on it,
		// accepts it (with the layer range the store would allocate).
		a := e.Assignable()
		if a.Layer != "" && a.LayerRange == nil {
			a.LayerRange = &assign.LayerRange{From: 0, To: assign.Buckets}
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("valid experiment %s: the assignment compiler refuses it: %v", data, err)
		}
		// Decode, encode, decode: the same experiment, still valid.
		again := createExperimentRequest{
			Key: e.Key, Name: e.Name, Hypothesis: e.Hypothesis, UnitType: e.UnitType, Variants: e.Variants,
			Traffic: &e.Traffic, Layer: e.Layer, LayerRange: e.LayerRange, LayerShare: req.LayerShare, Salt: e.Salt,
			Targeting: e.Targeting, Overrides: e.Overrides, Metrics: e.Metrics, Analysis: e.Analysis,
		}
		enc := encode(t, again)
		var req2 createExperimentRequest
		if err := decodeBody(enc, &req2); err != nil {
			t.Fatalf("the encoding %s of a valid experiment is refused: %v", enc, err)
		}
		e2, err := req2.experiment()
		if err != nil {
			t.Fatal(err)
		}
		if err := e2.Validate(nil); err != nil {
			t.Fatalf("the encoding %s of a valid experiment is invalid: %v", enc, err)
		}
		if x, y := encode(t, e), encode(t, e2); !bytes.Equal(x, y) {
			t.Fatalf("decode, encode, decode changed the experiment:\n%s\n%s", x, y)
		}
	})
}

// FuzzHoldoutBody: a holdout body is refused field by field, or it is
// valid and the assignment compiler (which servers and SDKs run on it)
// accepts it running, over experiments with the keys it lists, and holds
// out no unit beyond its fraction's buckets.
func FuzzHoldoutBody(f *testing.F) {
	for _, s := range seedBodies {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"key":"q1","name":"Q1","unit_type":"customer","fraction":0.05,"experiments":["a","b"],"layers":["home"],"metrics":{"primary":["purchase"]}}`))
	f.Add([]byte(`{"key":"q1","name":"Q1","unit_type":"customer","fraction":0.1000000001,"experiments":["a"]}`))
	f.Add([]byte(`{"key":"q1","name":"Q1","unit_type":"device","fraction":1e-9,"layers":["x","x"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req createHoldoutRequest
		if err := decodeBody(data, &req); err != nil {
			checkRefusal(t, data, err)
			return
		}
		checkAccepted(t, data, &req)
		h := &flywheel.Holdout{Key: req.Key, Name: req.Name, Description: req.Description, UnitType: req.UnitType,
			Fraction: req.Fraction, Experiments: req.Experiments, Layers: req.Layers, Metrics: req.Metrics, Status: flywheel.StatusRunning}
		h.Normalize()
		if err := h.Validate(nil, nil); err != nil {
			checkRefusal(t, data, err)
			return
		}
		cfg := assign.Config{Holdouts: []assign.Holdout{h.Assignable()}}
		for _, k := range h.Experiments {
			cfg.Experiments = append(cfg.Experiments, assign.Experiment{Key: k, UnitType: h.UnitType, Traffic: 1, Running: true,
				Variants: []assign.Variant{{Key: "a", Weight: 0.5}, {Key: "b", Weight: 0.5}}})
		}
		snap, err := assign.Compile(cfg)
		if err != nil {
			t.Fatalf("valid holdout %s: the assignment compiler refuses it: %v", data, err)
		}
		for _, k := range h.Experiments {
			for _, id := range []string{"u1", "u2", "u3", "u4"} {
				r := snap.Assign(k, id, nil)
				held := assign.Bucket(assign.HoldoutPrefix+h.Key+":"+id) < assign.HoldoutCut(h.Fraction)
				if (r.Reason == assign.ReasonHoldout) != held {
					t.Fatalf("holdout %s, %s in %s: %+v; the contract says held out = %v", data, id, k, r, held)
				}
			}
		}
	})
}

func FuzzMetricBody(f *testing.F) {
	for _, s := range seedBodies {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req createMetricRequest
		if err := decodeBody(data, &req); err != nil {
			checkRefusal(t, data, err)
			return
		}
		checkAccepted(t, data, &req)
		m := req.metric()
		if err := m.Validate(); err != nil {
			checkRefusal(t, data, err)
			return
		}
		again := createMetricRequest{
			Key: m.Key, Name: m.Name, Description: m.Description, Type: m.Type, Event: m.Event,
			Numerator: m.Numerator, Denominator: m.Denominator, WindowHours: m.WindowHours,
			FromHours: m.FromHours, ToHours: m.ToHours, CUPEDHours: &m.CUPEDHours, Direction: m.Direction, Cap: m.Cap,
		}
		enc := encode(t, again)
		var req2 createMetricRequest
		if err := decodeBody(enc, &req2); err != nil {
			t.Fatalf("the encoding %s of a valid metric is refused: %v", enc, err)
		}
		m2 := req2.metric()
		if err := m2.Validate(); err != nil {
			t.Fatalf("the encoding %s of a valid metric is invalid: %v", enc, err)
		}
		if x, y := encode(t, m), encode(t, m2); !bytes.Equal(x, y) {
			t.Fatalf("decode, encode, decode changed the metric:\n%s\n%s", x, y)
		}
	})
}

// bodyTypes are the other bodies the API decodes.
var bodyTypes = []reflect.Type{
	reflect.TypeFor[flywheel.ExperimentPatch](),
	reflect.TypeFor[flywheel.MetricPatch](),
	reflect.TypeFor[assignRequest](),
	reflect.TypeFor[consentRequest](),
	reflect.TypeFor[analysis.PowerRequest](),
	reflect.TypeFor[createHoldoutRequest](),
	reflect.TypeFor[flywheel.HoldoutPatch](),
}

func FuzzRequestBodies(f *testing.F) {
	for i := range bodyTypes {
		for _, s := range seedBodies {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		typ := bodyTypes[int(which)%len(bodyTypes)]
		v := reflect.New(typ).Interface()
		if err := decodeBody(data, v); err != nil {
			checkRefusal(t, data, err)
			return
		}
		checkAccepted(t, data, v)
		enc := encode(t, v)
		v2 := reflect.New(typ).Interface()
		if err := decodeBody(enc, v2); err != nil {
			t.Fatalf("%s: the encoding %s of an accepted body is refused: %v", typ, enc, err)
		}
		if enc2 := encode(t, v2); !bytes.Equal(enc, enc2) {
			t.Fatalf("%s: decode, encode, decode is not stable:\n%s\n%s", typ, enc, enc2)
		}
		// A patch that is accepted applies without a panic, and what it
		// leaves is judged by the validator alone.
		switch p := v.(type) {
		case *flywheel.ExperimentPatch:
			e := &flywheel.Experiment{Key: "e", UnitType: "customer", Status: flywheel.StatusDraft, Traffic: 1,
				Variants: []flywheel.Variant{{Key: "a", Weight: 0.5}, {Key: "b", Weight: 0.5}}}
			e.Normalize()
			if err := p.Apply(e); err != nil {
				t.Fatalf("a draft refused patch %s: %v", data, err)
			}
			if err := e.Validate(nil); err != nil {
				checkRefusal(t, data, err)
			}
		case *flywheel.MetricPatch:
			m := &flywheel.Metric{Key: "m", Type: flywheel.MetricMean, Event: "e", CUPEDHours: flywheel.DefaultCUPEDHours}
			p.Apply(m)
			if err := m.Validate(); err != nil {
				checkRefusal(t, data, err)
			}
		case *analysis.PowerRequest:
			if _, err := analysis.Power(*p); err != nil {
				checkRefusal(t, data, err)
			}
		}
	})
}
