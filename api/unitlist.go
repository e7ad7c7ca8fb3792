package api

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/strictjson"
)

// Limits of a unit list (POST /v1/experiments/{key}/assignments).
const (
	// maxListLine is the longest line of a list, in bytes (a CSV record
	// may span several lines, each within it).
	maxListLine = 64 << 10
	// maxListRows is the most units one request may list.
	maxListRows = 10_000_000
	// maxListColumns is the most columns a CSV list may have.
	maxListColumns = 256
	// maxListUnitID is the longest unit id, as in POST /v1/assign.
	maxListUnitID = 256
	// maxListAttributes is the most JSON an attributes object may take
	// (the limit of an exposure's attributes).
	maxListAttributes = 16 << 10
)

// listRow is one unit of a list.
type listRow struct {
	Line   int // 1-based line of the input where the row starts
	UnitID string
	Attrs  map[string]any
}

// listReader reads a unit list one row at a time. Next fills row and
// returns nil, a *flywheel.Error for a bad row (the reader may go on to the
// next row), or a fatal error after which it must not be called again
// (io.EOF at the end of the list).
type listReader interface {
	Next(row *listRow) error
}

// rowError is a bad row: its line and what is wrong with it.
type rowError struct {
	Line  int
	Field string // "unit_id", "attributes", a CSV column name, or ""
	Msg   string
}

func (e *rowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// fatalListError is a problem that stops the reading of a list (its
// syntax can no longer be followed, or a limit was passed).
type fatalListError struct{ err *flywheel.Error }

func (e *fatalListError) Error() string { return e.err.Error() }
func (e *fatalListError) Unwrap() error { return e.err }

// limitedLines wraps the body so that no line is longer than maxListLine
// bytes, counting lines for the error.
type limitedLines struct {
	r    io.Reader
	run  int // bytes since the last newline
	line int // newlines seen + 1
	err  error
}

func (l *limitedLines) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	for i := 0; i < n; i++ {
		if p[i] == '\n' {
			l.run, l.line = 0, l.line+1
			continue
		}
		l.run++
		if l.run > maxListLine {
			l.err = &fatalListError{flywheel.Invalid(fmt.Sprintf("lines[%d]", l.line), "line %d is longer than %d bytes", l.line, maxListLine)}
			return i, nil // what came before is read; the error comes next
		}
	}
	return n, err
}

func newLimitedLines(r io.Reader) *limitedLines { return &limitedLines{r: r, line: 1} }

// ndjsonList reads lines {"unit_id": "...", "attributes": {...}}.
type ndjsonList struct {
	r    *bufio.Reader
	line int
	done bool
}

func newNDJSONList(r io.Reader) *ndjsonList {
	return &ndjsonList{r: bufio.NewReaderSize(newLimitedLines(r), maxListLine+2)}
}

// ndjsonRow is one line of an NDJSON list.
type ndjsonRow struct {
	UnitID     *string        `json:"unit_id"`
	Attributes map[string]any `json:"attributes"`
}

// listJSON are strictjson's rules for a line: exact field names, no key
// twice, text PostgreSQL can store (attributes may be recorded with an
// exposure), numbers it can store.
var listJSON = strictjson.Options{Subject: "line"}

func (l *ndjsonList) Next(row *listRow) error {
	for {
		if l.done {
			return io.EOF
		}
		b, err := l.r.ReadSlice('\n')
		if err != nil {
			var fatal *fatalListError
			switch {
			case errors.As(err, &fatal):
				return err
			case err == io.EOF:
				l.done = true
				if len(b) == 0 {
					return io.EOF
				}
			default:
				return err // bufio.ErrBufferFull cannot happen: limitedLines stops first
			}
		}
		l.line++
		t := bytes.TrimSpace(b)
		if len(t) == 0 {
			continue // blank lines (a trailing newline, CRLF) are not rows
		}
		*row = listRow{Line: l.line}
		return decodeNDJSONRow(t, row)
	}
}

// decodeNDJSONRow checks a line with strictjson and decodes it once.
func decodeNDJSONRow(t []byte, row *listRow) error {
	if decodeFastRow(t, row) && checkListUnitID(row.UnitID) == "" {
		return nil
	}
	row.UnitID, row.Attrs = "", nil
	var r ndjsonRow
	if bad := strictjson.Decode(t, &r, listJSON); bad != nil {
		field := bad.Field
		if strings.HasPrefix(field, "attributes") {
			field = "attributes"
		}
		return &rowError{Line: row.Line, Field: field, Msg: bad.Message}
	}
	if r.UnitID == nil {
		return &rowError{Line: row.Line, Field: "unit_id", Msg: "unit_id is required"}
	}
	if bad := checkListUnitID(*r.UnitID); bad != "" {
		return &rowError{Line: row.Line, Field: "unit_id", Msg: bad}
	}
	row.UnitID, row.Attrs = *r.UnitID, r.Attributes
	return nil
}

// checkListUnitID returns what is wrong with a unit id, or "".
func checkListUnitID(id string) string {
	switch {
	case id == "":
		return "unit_id is empty"
	case len(id) > maxListUnitID:
		return fmt.Sprintf("unit_id must be at most %d bytes", maxListUnitID)
	case strings.IndexByte(id, 0) >= 0:
		return "unit_id must not contain NUL characters"
	case !utf8.ValidString(id):
		return "unit_id must be valid UTF-8"
	}
	return ""
}

// unstorableText names text in decoded attributes that PostgreSQL's jsonb
// refuses (NUL), or returns "".
func unstorableText(v any) string {
	switch x := v.(type) {
	case string:
		if strings.IndexByte(x, 0) >= 0 {
			return "must not contain NUL characters"
		}
	case map[string]any:
		for k, y := range x {
			if p := unstorableText(k); p != "" {
				return p
			}
			if p := unstorableText(y); p != "" {
				return p
			}
		}
	case []any:
		for _, y := range x {
			if p := unstorableText(y); p != "" {
				return p
			}
		}
	}
	return ""
}

// csvColumn is one attribute column of a CSV list: its path (a header
// "address.city" sets attributes {"address": {"city": ...}}) and type.
type csvColumn struct {
	name string
	path []string
	kind string // string, number, boolean, json
}

// csvList reads a CSV list (RFC 4180) whose header names a unit_id column;
// every other column is an attribute.
type csvList struct {
	r       *csv.Reader
	lines   *limitedLines
	idCol   int
	columns []csvColumn // by position; idCol's entry is unused
	header  bool
}

func newCSVList(r io.Reader) *csvList {
	ll := newLimitedLines(r)
	cr := csv.NewReader(ll)
	cr.ReuseRecord = true
	return &csvList{r: cr, lines: ll, idCol: -1}
}

// readHeader reads and checks the header line.
func (l *csvList) readHeader() error {
	l.header = true
	rec, err := l.r.Read()
	if err == io.EOF {
		return &fatalListError{flywheel.Invalid("lines[1]", "the list is empty: a CSV list starts with a header line naming a unit_id column")}
	}
	if err != nil {
		return l.fatal(err)
	}
	if len(rec) > maxListColumns {
		return &fatalListError{flywheel.Invalid("lines[1]", "line 1: a CSV list may have at most %d columns, not %d", maxListColumns, len(rec))}
	}
	seen := map[string]bool{}
	l.columns = make([]csvColumn, len(rec))
	for i, h := range rec {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // a byte order mark, as spreadsheets write
		}
		h = strings.TrimSpace(h)
		name, kind, typed := strings.Cut(h, ":")
		if !typed {
			kind = "string"
		}
		switch {
		case name == "":
			return &fatalListError{flywheel.Invalid("lines[1]", "line 1: column %d has no name", i+1)}
		case kind != "string" && kind != "number" && kind != "boolean" && kind != "json":
			return &fatalListError{flywheel.Invalid("lines[1]", "line 1: column %q: the type after ':' must be string, number, boolean or json, not %q", name, kind)}
		case seen[name]:
			return &fatalListError{flywheel.Invalid("lines[1]", "line 1: column %q appears twice", name)}
		case strings.IndexByte(name, 0) >= 0 || !utf8.ValidString(name):
			return &fatalListError{flywheel.Invalid("lines[1]", "line 1: column %d's name must be valid UTF-8 without NUL", i+1)}
		}
		seen[name] = true
		if name == "unit_id" {
			if typed && kind != "string" {
				return &fatalListError{flywheel.Invalid("lines[1]", "line 1: the unit_id column is text; it takes no type")}
			}
			l.idCol = i
			continue
		}
		path := strings.Split(name, ".")
		for _, p := range path {
			if p == "" {
				return &fatalListError{flywheel.Invalid("lines[1]", "line 1: column %q has an empty part in its dotted path", name)}
			}
		}
		l.columns[i] = csvColumn{name: name, path: path, kind: kind}
	}
	if l.idCol < 0 {
		return &fatalListError{flywheel.Invalid("lines[1]", "line 1: the header has no unit_id column (columns: %s)", strings.Join(rec, ", "))}
	}
	// A column that is both a value and an object ("a" and "a.b") cannot be
	// built.
	for i, c := range l.columns {
		for j, d := range l.columns {
			if i != j && len(c.path) > 0 && len(d.path) > len(c.path) && strings.HasPrefix(d.name, c.name+".") {
				return &fatalListError{flywheel.Invalid("lines[1]", "line 1: column %q is both a value and the parent of column %q", c.name, d.name)}
			}
		}
	}
	return nil
}

func (l *csvList) fatal(err error) error {
	var fatal *fatalListError
	if errors.As(err, &fatal) {
		return fatal
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &fatalListError{flywheel.Invalid(fmt.Sprintf("lines[%d]", pe.StartLine), "line %d: %v (at line %d, column %d; CSV quoting is RFC 4180's: a field holding a quote, comma or newline is quoted, and its quotes doubled)", pe.StartLine, pe.Err, pe.Line, pe.Column)}
	}
	return err
}

func (l *csvList) Next(row *listRow) error {
	if !l.header {
		if err := l.readHeader(); err != nil {
			return err
		}
	}
	rec, err := l.r.Read()
	if err == io.EOF {
		return io.EOF
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
			*row = listRow{Line: pe.StartLine}
			return &rowError{Line: pe.StartLine, Msg: fmt.Sprintf("has %d fields; the header has %d", len(rec), len(l.columns))}
		}
		return l.fatal(err)
	}
	line, _ := l.r.FieldPos(0) // only after a record was read: it panics otherwise
	*row = listRow{Line: line}
	id := rec[l.idCol]
	if bad := checkListUnitID(id); bad != "" {
		return &rowError{Line: line, Field: "unit_id", Msg: bad}
	}
	row.UnitID = strings.Clone(id) // rec is reused
	size := 0
	for i, cell := range rec {
		c := l.columns[i]
		if i == l.idCol || cell == "" {
			continue // an empty cell leaves the attribute out
		}
		size += len(c.name) + len(cell)
		v, bad := c.value(cell)
		if bad != "" {
			return &rowError{Line: line, Field: c.name, Msg: fmt.Sprintf("column %q: %s", c.name, bad)}
		}
		if row.Attrs == nil {
			row.Attrs = make(map[string]any, len(rec)-1)
		}
		setPath(row.Attrs, c.path, v)
	}
	if size > maxListAttributes {
		return &rowError{Line: line, Field: "attributes", Msg: fmt.Sprintf("attributes must be at most %d bytes", maxListAttributes)}
	}
	return nil
}

// value reads one cell by the column's type.
func (c csvColumn) value(cell string) (any, string) {
	switch c.kind {
	case "number":
		f, err := strconv.ParseFloat(strings.TrimSpace(cell), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Sprintf("%q is not a finite number", cell)
		}
		return f, ""
	case "boolean":
		switch strings.ToLower(strings.TrimSpace(cell)) {
		case "true":
			return true, ""
		case "false":
			return false, ""
		}
		return nil, fmt.Sprintf("%q is not true or false", cell)
	case "json":
		var v any
		if err := json.Unmarshal([]byte(cell), &v); err != nil {
			return nil, "is not valid JSON"
		}
		if p := unstorableText(v); p != "" {
			return nil, p
		}
		return v, ""
	}
	if strings.IndexByte(cell, 0) >= 0 || !utf8.ValidString(cell) {
		return nil, "must be valid UTF-8 without NUL characters"
	}
	return strings.Clone(cell), ""
}

// setPath sets m[path[0]][path[1]]... = v, making the objects on the way.
func setPath(m map[string]any, path []string, v any) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}
