package sdk

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// sseEvent is one event of a Server-Sent Events stream, as the WHATWG
// HTML standard's "event stream interpretation" dispatches it.
type sseEvent struct {
	ID    string // the last event ID (it persists across events)
	Event string // the event type; "" reads as "message"
	Data  []byte // the data lines joined by "\n"
}

// errSSELineTooLong is returned for a line longer than the reader's bound.
var errSSELineTooLong = errors.New("sdk: stream line too long")

// sseReader parses an event stream: lines ending in CR LF, LF or CR;
// "field: value" (one space after the colon dropped); comments (a line
// starting with a colon); an event dispatched at each blank line when it
// has data. It is the standard's algorithm but for what a client that
// reconnects itself does not need: retry: values are only reported.
type sseReader struct {
	rd      *bufio.Reader
	maxLine int
	line    []byte
	lastCR  bool // the previous line ended with CR: skip an LF next
	lastID  string
	// onLine is called for every line read (a line, a comment
	// included): the caller's idle watchdog.
	onLine func()
	// retry is the last valid retry: value in milliseconds, or -1.
	retry int64
}

func newSSEReader(r io.Reader, maxLine int) *sseReader {
	return &sseReader{rd: bufio.NewReaderSize(r, 32<<10), maxLine: maxLine, retry: -1}
}

// readLine returns the next line without its end, or an error: io.EOF at
// the end of the stream (a last line without an end is dropped, as the
// standard says), errSSELineTooLong past maxLine bytes.
func (s *sseReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		b, err := s.rd.ReadByte()
		if err != nil {
			return nil, err
		}
		if s.lastCR {
			s.lastCR = false
			if b == '\n' {
				continue
			}
		}
		switch b {
		case '\n':
			return s.line, nil
		case '\r':
			s.lastCR = true
			return s.line, nil
		}
		if len(s.line) >= s.maxLine {
			return nil, errSSELineTooLong
		}
		s.line = append(s.line, b)
	}
}

// next returns the next dispatched event, or the read error (io.EOF at
// the end of the stream; an event not yet dispatched is dropped).
func (s *sseReader) next() (sseEvent, error) {
	var (
		data    []byte
		hasData bool
		event   string
	)
	for {
		line, err := s.readLine()
		if err != nil {
			return sseEvent{}, err
		}
		if s.onLine != nil {
			s.onLine()
		}
		if len(line) == 0 {
			if !hasData {
				event = "" // nothing to dispatch; the type resets
				continue
			}
			return sseEvent{ID: s.lastID, Event: event, Data: data}, nil
		}
		if line[0] == ':' {
			continue // a comment
		}
		name, value, found := bytes.Cut(line, []byte{':'})
		if found && len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(name) {
		case "event":
			event = string(value)
		case "data":
			if hasData {
				if len(data)+1+len(value) > s.maxLine {
					return sseEvent{}, errSSELineTooLong
				}
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				s.lastID = string(value)
			}
		case "retry":
			if n, err := strconv.ParseInt(string(value), 10, 64); err == nil && n >= 0 && isDigits(value) {
				s.retry = n
			}
		}
	}
}

// isDigits reports whether b is only ASCII digits (and not empty).
func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
