package sdk

import (
	"io"
	"sync/atomic"
)

// batches holds the delivery goroutine's buffers: the records a batch
// takes, and its events' JSON. A request body may still be read after its
// request returned (a transport closes it when it is done, maybe later,
// from another goroutine), so the JSON buffers are reused only once every
// body made from them is closed; until then a batch gets new ones.
// Reusing them keeps the delivery from making garbage in proportion to the
// events sent, which would make the app's own garbage collection run more
// often.
type batches struct {
	recs   [][]byte // the records being encoded; reused at once
	json   []byte
	events [][]byte     // slices of json, one per event
	open   atomic.Int32 // bodies made and not closed yet
}

// encode returns the JSON of each record, each with a new id. It runs
// once per event, when the event goes into flight: every attempt to send
// it then sends the same JSON, and the server recognises a retry by the
// id.
func (bs *batches) encode(recs [][]byte) [][]byte {
	if bs.open.Load() != 0 { // a transport may still read the last batch
		bs.json, bs.events = nil, nil
	}
	size := 0
	for _, r := range recs {
		size += recordBound(r) / 2 // most events take under half their bound
	}
	buf := bs.json[:0]
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	events := bs.events[:0]
	for _, r := range recs {
		start := len(buf)
		buf = appendRecordJSON(buf, r, newEventID(recordTime(r)))
		// When buf grows, the events before stay in the old array, which
		// is never written again.
		events = append(events, buf[start:len(buf):len(buf)])
	}
	bs.json, bs.events = buf, events
	return events
}

// body returns a new request body over events (not empty):
// {"events":[e0,e1,...]}, read from the events' JSON without copying it.
func (bs *batches) body(events [][]byte) io.ReadCloser {
	bs.open.Add(1)
	return &batchBody{events: events, open: &bs.open}
}

// bodySize returns the length of the body over events.
func bodySize(events [][]byte) int {
	n := len(eventsOpen) + len(eventsClose) + len(events) - 1
	for _, ev := range events {
		n += len(ev)
	}
	return n
}

// The pieces of a batch's body around its events.
var (
	eventsOpen  = []byte(`{"events":[`)
	comma       = []byte(`,`)
	eventsClose = []byte(`]}`)
)

// batchBody reads the pieces of a body in turn: 0 the opening, 2i+1
// event i, then the comma after it, or the closing after the last event.
type batchBody struct {
	events [][]byte
	piece  int
	off    int // in the current piece
	open   *atomic.Int32
	closed atomic.Bool
}

func (b *batchBody) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		s := b.current()
		if s == nil {
			return n, io.EOF
		}
		c := copy(p[n:], s[b.off:])
		n += c
		if b.off += c; b.off == len(s) {
			b.piece, b.off = b.piece+1, 0
		}
	}
	return n, nil
}

// current returns the piece being read, nil after the last.
func (b *batchBody) current() []byte {
	last := 2 * len(b.events)
	switch {
	case b.piece == 0:
		return eventsOpen
	case b.piece > last:
		return nil
	case b.piece%2 == 1:
		return b.events[b.piece/2]
	case b.piece == last:
		return eventsClose
	}
	return comma
}

// Close records that the transport is done with the body; a second Close
// does nothing.
func (b *batchBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.open.Add(-1)
	}
	return nil
}
