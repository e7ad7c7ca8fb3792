package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// copyRows is a PostgreSQL binary COPY stream (COPY ... FROM STDIN (FORMAT
// binary)) built by hand for the ingestion path's two COPYs. pgx's
// CopyFrom finds an encode plan for every value; with the column types
// known in advance, appending the bytes directly took most of the Go side's
// COPY cost away (BENCHMARKS.md).
type copyRows struct {
	b []byte
	n int
}

// copySignature opens every binary COPY stream: the signature, no flags,
// no header extension.
var copySignature = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

func newCopyRows(sizeHint int) *copyRows {
	c := &copyRows{b: make([]byte, 0, sizeHint)}
	c.b = append(c.b, copySignature...)
	return c
}

// row starts a row of n columns.
func (c *copyRows) row(n int) {
	c.b = binary.BigEndian.AppendUint16(c.b, uint16(n))
	c.n++
}

func (c *copyRows) null() { c.b = binary.BigEndian.AppendUint32(c.b, math.MaxUint32) } // length -1

func (c *copyRows) text(s string) {
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(s)))
	c.b = append(c.b, s...)
}

// textOrNull stores "" as NULL.
func (c *copyRows) textOrNull(s string) {
	if s == "" {
		c.null()
		return
	}
	c.text(s)
}

func (c *copyRows) uuid(id [16]byte) {
	c.b = binary.BigEndian.AppendUint32(c.b, 16)
	c.b = append(c.b, id[:]...)
}

// pgEpoch is where PostgreSQL's timestamps count from, in Unix microseconds.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

// timestamptz stores t to the microsecond (truncated, as pgx does).
func (c *copyRows) timestamptz(t time.Time) {
	c.b = binary.BigEndian.AppendUint32(c.b, 8)
	c.b = binary.BigEndian.AppendUint64(c.b, uint64(t.UnixMicro()-pgEpoch))
}

func (c *copyRows) float8OrNull(f *float64) {
	if f == nil {
		c.null()
		return
	}
	c.b = binary.BigEndian.AppendUint32(c.b, 8)
	c.b = binary.BigEndian.AppendUint64(c.b, math.Float64bits(*f))
}

// jsonbOrNull stores a JSON document (nullJSON's rule for NULL): jsonb's
// binary form is a version byte, 1, and the text.
func (c *copyRows) jsonbOrNull(doc []byte) {
	doc = nullJSON(doc)
	if doc == nil {
		c.null()
		return
	}
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(doc)+1))
	c.b = append(c.b, 1)
	c.b = append(c.b, doc...)
}

// copyTo sends the rows with copySQL (a COPY ... FROM STDIN (FORMAT binary))
// on tx's connection and returns the rows stored.
func (c *copyRows) copyTo(ctx context.Context, tx pgx.Tx, copySQL string) (int64, error) {
	c.b = binary.BigEndian.AppendUint16(c.b, math.MaxUint16) // trailer: -1
	var tag pgconn.CommandTag
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(c.b), copySQL)
	return tag.RowsAffected(), err
}

// Element types of the binary arrays below (pg_type.oid).
const (
	oidBool        = 16
	oidInt4        = 23
	oidText        = 25
	oidTID         = 27
	oidFloat8      = 701
	oidDate        = 1082
	oidTimestamptz = 1184
)

// binArray is a one-dimensional array in PostgreSQL's binary format, built
// by hand for foldNew's parameters and the aggregator's (wireParams), as
// copyRows is for the COPYs: pgx's generic array encoding took 40 % of
// WriteEvents' own CPU time (BENCHMARKS.md, "Ingestion: where an event's
// CPU goes"). An element is written as a COPY field is (a length, -1 for
// NULL, and the value), so the array appends with copyRows' field methods
// after its own header.
type binArray struct {
	copyRows // b only: the header, then the elements
	elems    int
	hasNull  bool
}

// binArrayHeader is ndim, flags, element type, length and lower bound.
const binArrayHeader = 20

func newBinArray(oid uint32, sizeHint int) *binArray {
	a := &binArray{copyRows: copyRows{b: make([]byte, binArrayHeader, binArrayHeader+sizeHint)}}
	binary.BigEndian.PutUint32(a.b[8:], oid)
	return a
}

func (a *binArray) null() {
	a.copyRows.null()
	a.elems++
	a.hasNull = true
}

func (a *binArray) text(s string) {
	a.copyRows.text(s)
	a.elems++
}

func (a *binArray) boolean(v bool) {
	a.b = binary.BigEndian.AppendUint32(a.b, 1)
	if v {
		a.b = append(a.b, 1)
	} else {
		a.b = append(a.b, 0)
	}
	a.elems++
}

func (a *binArray) int4(v int32) {
	a.b = binary.BigEndian.AppendUint32(a.b, 4)
	a.b = binary.BigEndian.AppendUint32(a.b, uint32(v))
	a.elems++
}

func (a *binArray) timestamptz(t time.Time) {
	a.copyRows.timestamptz(t)
	a.elems++
}

func (a *binArray) float8OrNull(f *float64) {
	if f == nil {
		a.null()
		return
	}
	a.copyRows.float8OrNull(f)
	a.elems++
}

func (a *binArray) float8(v float64) {
	a.b = binary.BigEndian.AppendUint32(a.b, 8)
	a.b = binary.BigEndian.AppendUint64(a.b, math.Float64bits(v))
	a.elems++
}

// tid appends a row's ctid: its block, then its offset.
func (a *binArray) tid(t pgtype.TID) {
	a.b = appendTID(binary.BigEndian.AppendUint32(a.b, 6), t)
	a.elems++
}

// appendTID appends ctid t in the binary format.
func appendTID(b []byte, t pgtype.TID) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint32(b, t.BlockNumber), t.OffsetNumber)
}

// date appends a UTC day, given in days since 1970-01-01 (dayNumber).
func (a *binArray) date(day int32) {
	a.b = binary.BigEndian.AppendUint32(a.b, 4)
	a.b = binary.BigEndian.AppendUint32(a.b, uint32(day-pgEpochDay))
	a.elems++
}

// dateOrNull appends day (dayNumber), or NULL for noDay.
func (a *binArray) dateOrNull(day int32) {
	if day == noDay {
		a.null()
		return
	}
	a.date(day)
}

// pgEpochDay is 2000-01-01, where PostgreSQL's dates count from, in days
// since 1970-01-01.
const pgEpochDay = 10957

// bytes returns the array's binary value; an empty array is '{}' (no
// dimensions), not NULL.
func (a *binArray) bytes() []byte {
	if a.elems == 0 {
		return a.b[:12] // ndim 0, flags 0, element type
	}
	binary.BigEndian.PutUint32(a.b[0:], 1)
	if a.hasNull {
		binary.BigEndian.PutUint32(a.b[4:], 1)
	}
	binary.BigEndian.PutUint32(a.b[12:], uint32(a.elems))
	binary.BigEndian.PutUint32(a.b[16:], 1)
	return a.b
}

// wireParams are a statement's parameters, each already in the wire format
// its format code says (binary, or text for the few that only PostgreSQL
// parses well, such as numeric arrays), for queryPrepared: the
// aggregator's statements take arrays of hundreds of thousands of
// elements, which pgx's generic encoding builds an element at a time
// through interfaces, and binArray appends directly (BENCHMARKS.md, "The
// aggregator's parameters in binary").
type wireParams struct {
	values  [][]byte
	formats []int16
}

func (p *wireParams) add(v []byte, format int16) {
	p.values, p.formats = append(p.values, v), append(p.formats, format)
}

// text adds a text value (its binary format is its bytes).
func (p *wireParams) text(s string) { p.add([]byte(s), 1) }

// array adds a binary array.
func (p *wireParams) array(a *binArray) { p.add(a.bytes(), 1) }

// literal adds a value in PostgreSQL's text format.
func (p *wireParams) literal(s string) { p.add([]byte(s), 0) }

// null adds NULL.
func (p *wireParams) null() { p.add(nil, 1) }

// bindSize is the length of a Bind message of p's values for the
// prepared statement name, with one result format, and room for the
// messages ExecPrepared sends after it (Describe, Execute, Sync).
func (p *wireParams) bindSize(name string) int {
	n := 1 + 4 + 1 + len(name) + 1 + 2 + 2*len(p.formats) + 2 + 2 + 2 + 64
	for _, v := range p.values {
		n += 4 + len(v)
	}
	return n
}

// bindReserve, sent to pgproto3's Frontend just before a large Bind, adds
// no bytes: it makes the write buffer large enough for the Bind at once.
// The Frontend drops its buffer back to 1 KB after each Flush of a larger
// one, and Bind.Encode appends each parameter, so a fold's parameters of
// tens of megabytes grew a fresh buffer from 1 KB, by copies of a quarter
// more each time: 5.5–6.8 s of CPU over a 3-minute run at 50,000
// events/s (BENCHMARKS.md, "pgx's write buffer sized once").
type bindReserve int

// bindReserveAbove is the buffer the Frontend keeps between messages
// (maxLen in Frontend.Flush): a larger Bind needs a buffer of its own,
// allocated once here instead of grown. Ingestion's batches of 1,000
// events are Binds of tens of kilobytes.
const bindReserveAbove = 1024

func (r bindReserve) Encode(dst []byte) ([]byte, error) {
	if cap(dst)-len(dst) >= int(r) {
		return dst, nil
	}
	b := make([]byte, len(dst), len(dst)+int(r))
	copy(b, dst)
	return b, nil
}

func (bindReserve) Decode([]byte) error { return errors.New("bindReserve is only sent") }

func (bindReserve) Frontend() {}

// queryPrepared runs sql with p, prepared once per connection under name,
// and calls row (when not nil: a statement that returns no rows, such as
// ingestion's foldNew, passes nil) with the values of each result row, each
// in binary format (nil for NULL; valid only during the call).
func queryPrepared(ctx context.Context, tx pgx.Tx, name, sql string, p *wireParams, row func(values [][]byte) error) error {
	if _, err := tx.Conn().Prepare(ctx, name, sql); err != nil {
		return err
	}
	pc := tx.Conn().PgConn()
	// Only on a connection at rest, the Bind to follow at once: a closing
	// connection's goroutine sends its Terminate through the same buffer,
	// and a busy one would keep a buffer it does not use.
	if n := p.bindSize(name); n > bindReserveAbove && ctx.Err() == nil && !pc.IsBusy() && !pc.IsClosed() {
		pc.Frontend().Send(bindReserve(n))
	}
	rr := pc.ExecPrepared(ctx, name, p.values, p.formats, []int16{1})
	for rr.NextRow() {
		if row == nil {
			continue
		}
		if err := row(rr.Values()); err != nil {
			rr.Close()
			return err
		}
	}
	_, err := rr.Close()
	return err
}

// Decoders of binary result values. Each checks the length its type has,
// so a column of another type is an error, not a misread.

func wireTID(v []byte) (pgtype.TID, error) {
	if len(v) != 6 {
		return pgtype.TID{}, fmt.Errorf("tid of %d bytes", len(v))
	}
	return pgtype.TID{BlockNumber: binary.BigEndian.Uint32(v), OffsetNumber: binary.BigEndian.Uint16(v[4:]), Valid: true}, nil
}

func wireFloat8(v []byte) (float64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("float8 of %d bytes", len(v))
	}
	return math.Float64frombits(binary.BigEndian.Uint64(v)), nil
}

func wireInt2(v []byte) (int16, error) {
	if len(v) != 2 {
		return 0, fmt.Errorf("int2 of %d bytes", len(v))
	}
	return int16(binary.BigEndian.Uint16(v)), nil
}

// wireDay decodes a finite date into days since 1970-01-01 (dayNumber).
func wireDay(v []byte) (int32, error) {
	if len(v) != 4 {
		return 0, fmt.Errorf("date of %d bytes", len(v))
	}
	d := int32(binary.BigEndian.Uint32(v))
	if d == math.MaxInt32 || d == math.MinInt32 {
		return 0, fmt.Errorf("infinite date")
	}
	return d + pgEpochDay, nil
}

// wireTimestamptz decodes a finite timestamptz into local time, as pgx does.
func wireTimestamptz(v []byte) (time.Time, error) {
	if len(v) != 8 {
		return time.Time{}, fmt.Errorf("timestamptz of %d bytes", len(v))
	}
	us := int64(binary.BigEndian.Uint64(v))
	if us == math.MaxInt64 || us == math.MinInt64 {
		return time.Time{}, fmt.Errorf("infinite timestamptz")
	}
	return time.UnixMicro(us + pgEpoch), nil
}
