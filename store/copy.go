package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	oidInt4        = 23
	oidText        = 25
	oidFloat8      = 701
	oidTimestamptz = 1184
)

// binArray is a one-dimensional array in PostgreSQL's binary format, built
// by hand for foldNew's parameters, as copyRows is for the COPYs: pgx's
// generic array encoding took 40 % of WriteEvents' own CPU time
// (BENCHMARKS.md, "Ingestion: where an event's CPU goes"). An element is
// written as a COPY field is (a length, -1 for NULL, and the value), so
// the array appends with copyRows' field methods after its own header.
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
