package ingest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flywheel-oss/flywheel"
)

func TestDecodeJSONEnvelope(t *testing.T) {
	many := `{"events": [` + strings.Repeat(`{},`, MaxEvents) + `{}]}`
	most := `{"events": [` + strings.Repeat(`{},`, MaxEvents-1) + `{}]}`
	tests := []struct {
		name      string
		body      string
		wantCode  flywheel.Code // "" = no error
		wantField string
		wantN     int
	}{
		{"one event", `{"events": [{"id": "x"}]}`, "", "", 1},
		{"empty list", `{"events": []}`, "", "", 0},
		{"whitespace around", " \n{\"events\": [{}, {}]}\n ", "", "", 2},
		{"exactly the limit", most, "", "", MaxEvents},
		{"events of any JSON kind", `{"events": [1, "x", null, [], {}]}`, "", "", 5},
		{"empty body", ``, flywheel.CodeInvalidArgument, "", 0},
		{"not an object: array", `[{"id": "x"}]`, flywheel.CodeInvalidArgument, "", 0},
		{"not an object: string", `"events"`, flywheel.CodeInvalidArgument, "", 0},
		{"not an object: number", `42`, flywheel.CodeInvalidArgument, "", 0},
		{"null", `null`, flywheel.CodeInvalidArgument, "events", 0},
		{"missing events", `{}`, flywheel.CodeInvalidArgument, "events", 0},
		{"events null", `{"events": null}`, flywheel.CodeInvalidArgument, "events", 0},
		{"events not an array", `{"events": {"id": "x"}}`, flywheel.CodeInvalidArgument, "events", 0},
		{"events a number", `{"events": 5}`, flywheel.CodeInvalidArgument, "events", 0},
		{"unknown top-level field", `{"events": [], "batch": 1}`, flywheel.CodeInvalidArgument, "batch", 0},
		// Exact names, each once (issue 12): encoding/json took both.
		{"events in capitals", `{"Events": [{}]}`, flywheel.CodeInvalidArgument, "Events", 0},
		{"events spelt with an escape", `{"\u0045vents": [{}]}`, flywheel.CodeInvalidArgument, "Events", 0},
		{"events twice", `{"events": [{}], "events": [{}, {}]}`, flywheel.CodeInvalidArgument, "events", 0},
		{"events and Events", `{"events": [{}], "EVENTS": []}`, flywheel.CodeInvalidArgument, "EVENTS", 0},
		// A syntax error names where it broke.
		{"truncated", `{"events": [{"id": "x"}`, flywheel.CodeInvalidArgument, "events[1]", 0},
		{"truncated in an event", `{"events": [{"id": "x"}, {"id": `, flywheel.CodeInvalidArgument, "events[1].id", 0},
		{"syntax error", `{"events": [}`, flywheel.CodeInvalidArgument, "events[0]", 0},
		{"NaN", `{"events": [{"id": "x"}, {"value": NaN}]}`, flywheel.CodeInvalidArgument, "events[1].value", 0},
		{"two objects", `{"events": []} {"events": []}`, flywheel.CodeInvalidArgument, "", 0},
		{"trailing brace", `{"events": []}}`, flywheel.CodeInvalidArgument, "", 0},
		{"trailing bracket", `{"events": []}]`, flywheel.CodeInvalidArgument, "", 0},
		{"trailing garbage", `{"events": []} x`, flywheel.CodeInvalidArgument, "", 0},
		{"too many events", many, flywheel.CodePayloadTooLarge, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raws, err := DecodeJSON([]byte(tt.body))
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("DecodeJSON = %v, want no error", err)
				}
				if len(raws) != tt.wantN {
					t.Fatalf("DecodeJSON gave %d events, want %d", len(raws), tt.wantN)
				}
				for i, r := range raws {
					if r.Index != i || r.Err != nil || len(r.JSON) == 0 {
						t.Errorf("event %d = {Index %d, Err %v, JSON %q}, want index %d, no error", i, r.Index, r.Err, r.JSON, i)
					}
				}
				return
			}
			var fe *flywheel.Error
			if !errors.As(err, &fe) {
				t.Fatalf("DecodeJSON = %v, %v; want a *flywheel.Error", len(raws), err)
			}
			if fe.Code != tt.wantCode || fe.Field != tt.wantField || fe.Message == "" {
				t.Errorf("DecodeJSON error = {%s %q %q}, want code %s, field %q", fe.Code, fe.Field, fe.Message, tt.wantCode, tt.wantField)
			}
		})
	}
}

func TestDecodeNDJSON(t *testing.T) {
	type want struct {
		index int
		json  string
		bad   bool
	}
	tests := []struct {
		name     string
		body     string
		want     []want
		wantCode flywheel.Code
	}{
		{"empty", "", nil, ""},
		{"one line no newline", `{"id":"a"}`, []want{{0, `{"id":"a"}`, false}}, ""},
		{"lines", "{\"id\":\"a\"}\n{\"id\":\"b\"}\n", []want{{0, `{"id":"a"}`, false}, {1, `{"id":"b"}`, false}}, ""},
		{"CRLF and blank lines skipped", "\r\n{\"id\":\"a\"}\r\n\r\n   \n\t\n{\"id\":\"b\"}\r\n", []want{{0, `{"id":"a"}`, false}, {1, `{"id":"b"}`, false}}, ""},
		{"a broken line is rejected alone", "{\"id\":\"a\"}\n\n{\"id\": \n{\"id\":\"c\"}\n", []want{{0, `{"id":"a"}`, false}, {1, `{"id":`, true}, {2, `{"id":"c"}`, false}}, ""},
		{"two values on a line", "{} {}\n{}", []want{{0, `{} {}`, true}, {1, `{}`, false}}, ""},
		{"a JSON array line is one (invalid) event", "[{}]\n", []want{{0, `[{}]`, false}}, ""},
		{"too many", strings.Repeat("{}\n", MaxEvents+1), nil, flywheel.CodePayloadTooLarge},
		{"line longer than the body limit", "{\"x\":\"" + strings.Repeat("a", MaxBodyBytes) + "\"}", nil, flywheel.CodeInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raws, err := DecodeNDJSON([]byte(tt.body))
			if tt.wantCode != "" {
				if flywheel.ErrorCode(err) != tt.wantCode {
					t.Fatalf("DecodeNDJSON = %d events, %v; want %s", len(raws), err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeNDJSON: %v", err)
			}
			if len(raws) != len(tt.want) {
				t.Fatalf("DecodeNDJSON gave %d events, want %d", len(raws), len(tt.want))
			}
			for i, w := range tt.want {
				r := raws[i]
				if r.Index != w.index || string(r.JSON) != w.json || (r.Err != nil) != w.bad {
					t.Errorf("event %d = {%d %q %v}, want {%d %q bad=%v}", i, r.Index, r.JSON, r.Err, w.index, w.json, w.bad)
				}
				if r.Err != nil && (r.Err.Code != flywheel.CodeInvalidArgument || r.Err.Message == "") {
					t.Errorf("event %d error = %+v, want invalid_argument with a message", i, r.Err)
				}
			}
		})
	}
	if n := len(mustNDJSON(t, strings.Repeat("{}\n\n", MaxEvents))); n != MaxEvents {
		t.Errorf("DecodeNDJSON of %d events and as many blank lines = %d events", MaxEvents, n)
	}
}

// TestDecodeNDJSONLineNumber: the message of a broken line names the line
// of the body a person would look at, counting blank lines.
func TestDecodeNDJSONLineNumber(t *testing.T) {
	raws := mustNDJSON(t, "{}\n\n\n{oops\n")
	if len(raws) != 2 || raws[1].Err == nil {
		t.Fatalf("DecodeNDJSON = %+v, want the second event rejected", raws)
	}
	if raws[1].Index != 1 {
		t.Errorf("rejected event index = %d, want 1", raws[1].Index)
	}
	if !strings.Contains(raws[1].Err.Message, "line 4") {
		t.Errorf("message %q does not name line 4", raws[1].Err.Message)
	}
	// And the field whose value broke, when there is one.
	raws = mustNDJSON(t, "{}\n{\"id\": \"x\", \"value\": NaN}\n")
	if len(raws) != 2 || raws[1].Err == nil || raws[1].Err.Field != "value" || !strings.Contains(raws[1].Err.Message, "line 2") {
		t.Errorf("DecodeNDJSON of a NaN on line 2 = %+v, want the second event rejected on value, naming line 2", raws[1].Err)
	}
}

func mustNDJSON(tb testing.TB, body string) []RawEvent {
	tb.Helper()
	raws, err := DecodeNDJSON([]byte(body))
	if err != nil {
		tb.Fatalf("DecodeNDJSON: %v", err)
	}
	return raws
}

// TestDecodeJSONKeepsOrder: indexes follow the request order, which is
// how rejections are reported.
func TestDecodeJSONKeepsOrder(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := range 50 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"n":%d}`, i)
	}
	b.WriteString(`]}`)
	raws, err := DecodeJSON([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range raws {
		if want := fmt.Sprintf(`{"n":%d}`, i); r.Index != i || string(r.JSON) != want {
			t.Errorf("event %d = {%d %s}, want {%d %s}", i, r.Index, r.JSON, i, want)
		}
	}
}
