package sdk

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// readAllEvents parses a whole stream.
func readAllEvents(in string, maxLine int) ([]sseEvent, int64, error) {
	r := newSSEReader(strings.NewReader(in), maxLine)
	var out []sseEvent
	for {
		ev, err := r.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return out, r.retry, err
		}
		out = append(out, ev)
	}
}

func TestSSEReader(t *testing.T) {
	for _, tt := range []struct {
		name  string
		in    string
		want  []sseEvent
		retry int64
		err   error
	}{
		{"one event", "id: 3\nevent: config\ndata: {}\n\n", []sseEvent{{ID: "3", Event: "config", Data: []byte("{}")}}, -1, nil},
		{"server's opening", ": flywheel sdk config stream\nretry: 2000\n\nid: 7\nevent: config\ndata: {\"revision\":7}\n\n: heartbeat\n\n",
			[]sseEvent{{ID: "7", Event: "config", Data: []byte(`{"revision":7}`)}}, 2000, nil},
		{"CRLF", "id: 1\r\nevent: config\r\ndata: x\r\n\r\n", []sseEvent{{ID: "1", Event: "config", Data: []byte("x")}}, -1, nil},
		{"CR", "id: 1\revent: config\rdata: x\r\r", []sseEvent{{ID: "1", Event: "config", Data: []byte("x")}}, -1, nil},
		{"no space after colon", "event:config\ndata:x\n\n", []sseEvent{{Event: "config", Data: []byte("x")}}, -1, nil},
		{"only one space dropped", "data:  x\n\n", []sseEvent{{Data: []byte(" x")}}, -1, nil},
		{"data lines joined", "data: a\ndata: b\ndata\n\n", []sseEvent{{Data: []byte("a\nb\n")}}, -1, nil},
		{"id persists, type resets", "id: 4\nevent: config\ndata: a\n\ndata: b\n\n", []sseEvent{{ID: "4", Event: "config", Data: []byte("a")}, {ID: "4", Data: []byte("b")}}, -1, nil},
		{"no data: no event", "event: config\n\nid: 9\n\n", nil, -1, nil},
		{"event type of an undispatched block resets", "event: config\n\ndata: x\n\n", []sseEvent{{Data: []byte("x")}}, -1, nil},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n", []sseEvent{{ID: "1", Data: []byte("a")}, {ID: "1", Data: []byte("b")}}, -1, nil},
		{"empty id resets", "id: 1\ndata: a\n\nid\ndata: b\n\n", []sseEvent{{ID: "1", Data: []byte("a")}, {Data: []byte("b")}}, -1, nil},
		{"bad retry ignored", "retry: 1x\nretry: -5\nretry: 300\nretry:\n\n", nil, 300, nil},
		{"unknown field ignored", "foo: bar\ndata: x\n\n", []sseEvent{{Data: []byte("x")}}, -1, nil},
		{"unterminated event dropped", "data: x\n\ndata: y\n", []sseEvent{{Data: []byte("x")}}, -1, nil},
		{"unterminated line dropped", "data: x", nil, -1, nil},
		{"line too long", "data: " + strings.Repeat("x", 64) + "\n\n", nil, -1, errSSELineTooLong},
		{"data too long in lines", strings.Repeat("data: "+strings.Repeat("x", 20)+"\n", 4) + "\n", nil, -1, errSSELineTooLong},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, retry, err := readAllEvents(tt.in, 64)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("events = %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i].ID != tt.want[i].ID || got[i].Event != tt.want[i].Event || !bytes.Equal(got[i].Data, tt.want[i].Data) {
					t.Errorf("event %d = %q, want %q", i, got[i], tt.want[i])
				}
			}
			if retry != tt.retry {
				t.Errorf("retry = %d, want %d", retry, tt.retry)
			}
		})
	}
}

// FuzzSSEReader: any input parses without panicking, within its bounds,
// and an event framed as the server frames it comes back unchanged after
// any prefix of junk lines that ends with a blank line.
func FuzzSSEReader(f *testing.F) {
	f.Add([]byte("id: 3\nevent: config\ndata: {}\n\n"), "7", []byte(`{"revision":7}`))
	f.Add([]byte(": c\r\nretry: 10\r\r\n\n"), "1", []byte("{}"))
	f.Add([]byte("data\ndata:\ndata: x\rid: \x00\n\n"), "", []byte("a"))
	f.Fuzz(func(t *testing.T, junk []byte, id string, data []byte) {
		const maxLine = 256
		events, _, err := readAllEvents(string(junk), maxLine)
		if err != nil && !errors.Is(err, errSSELineTooLong) {
			t.Fatalf("error %v", err)
		}
		for _, ev := range events {
			if len(ev.Data) > maxLine {
				t.Fatalf("event data of %d bytes past the bound %d", len(ev.Data), maxLine)
			}
		}
		// The round trip: a valid id and one-line data, after junk that is
		// closed by a blank line.
		if strings.ContainsAny(id, "\r\n\x00") || bytes.ContainsAny(data, "\r\n") || len(data)+6 > maxLine || len(id)+4 > maxLine || !utf8.Valid(data) {
			return
		}
		if err != nil {
			return
		}
		in := string(junk) + "\n\n" + "id: " + id + "\nevent: config\ndata: " + string(data) + "\n\n"
		got, _, err := readAllEvents(in, maxLine)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if len(got) == 0 {
			t.Fatalf("round trip: no event from %q", in)
		}
		last := got[len(got)-1]
		if last.ID != id || last.Event != "config" || !bytes.Equal(last.Data, data) {
			t.Fatalf("round trip = %q, want id %q, config, data %q", last, id, data)
		}
	})
}
