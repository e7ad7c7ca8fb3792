package sdk

import "sync"

// queue is the bounded buffer of event records (record.go) waiting to be
// sent. push never blocks on I/O: it takes a mutex that is only ever held
// to copy one record and move a few slice headers. When the buffer is full,
// push drops the oldest waiting event. The delivery loop (the only
// consumer) takes a batch off the front, which stays "in flight", outside
// the buffer's bound, until resolve.
//
// Events are numbered in push order (seq). The buffer holds seqs
// [pushed-n, pushed); the batch in flight holds [flightFirst,
// flightFirst+flightN). Flush waits for every seq below a mark to leave
// both.
type queue struct {
	mu          sync.Mutex
	buf         [][]byte // ring of records; grows up to capacity
	head, n     int
	capacity    int
	closed      bool
	pushed      uint64 // events queued so far
	overflowed  uint64 // of which pushed out of the full buffer
	flightFirst uint64
	flightN     int
	// reading: the batch in flight is being read (take to doneReading),
	// so the blocks its records are in cannot be reused yet.
	reading bool
	block   []byte       // the block push copies records into: see push
	retired []arenaBlock // the earlier blocks, oldest first, until reused or dropped
	made    int          // blocks allocated so far
	size    func(rec []byte) int
	// progress is closed and replaced whenever events leave, if a Flush
	// is waiting for it (watched): an overflowing buffer drops an event
	// per push, and a new channel each time would be an allocation on the
	// app's request path.
	progress chan struct{}
	watched  bool
}

// arenaBlock is a block push filled: it holds records up to seq end
// (excluded).
type arenaBlock struct {
	mem []byte
	end uint64
}

// newQueue returns a queue of at most capacity waiting events, whose take
// measures each by size (an upper bound of the bytes it will take in a
// request).
func newQueue(capacity int, size func(rec []byte) int) *queue {
	return &queue{capacity: capacity, buf: make([][]byte, min(capacity, 64)), size: size, progress: make(chan struct{})}
}

// arenaSize is the size of the blocks push copies records into: records
// are packed together instead of allocated one by one on the app's request
// path. Records leave the queue in push order, so blocks are done with in
// the order they were filled, and push reuses the oldest block once no
// record in it can be read again: in a steady flow, recording allocates
// nothing at all.
const arenaSize = 64 << 10

// push appends a copy of a record (the caller keeps rec). It returns the
// number of waiting events, whether it pushed out the oldest one to make
// room, and false for ok when the queue is closed (the event is not
// queued). A queued record is never written until it has left the queue
// and take's reader is done with it.
func (q *queue) push(rec []byte) (waiting int, overflowed, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return q.n, false, false
	}
	if q.n == q.capacity {
		q.buf[q.head] = nil
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		q.overflowed++
		overflowed = true
		q.progressLocked()
	} else if q.n == len(q.buf) {
		q.grow()
	}
	if len(q.block)+len(rec) > cap(q.block) {
		q.nextBlock(len(rec))
	}
	start := len(q.block)
	q.block = append(q.block, rec...)
	q.buf[(q.head+q.n)%len(q.buf)] = q.block[start:len(q.block):len(q.block)]
	q.n++
	q.pushed++
	return q.n, overflowed, true
}

// nextBlock retires the current block and starts one with room for need
// bytes: the oldest retired block when none of its records can be read any
// more, else a new one. Of the other blocks nothing reads, it keeps as many
// as are in use, and two more, as spares for the next blocks, and drops the
// rest: the memory held follows the events held, and shrinks after a burst.
func (q *queue) nextBlock(need int) {
	if cap(q.block) > 0 {
		q.retired = append(q.retired, arenaBlock{mem: q.block[:0], end: q.pushed})
	}
	live := q.pushed - uint64(q.n) // the oldest seq that may still be read
	if q.reading {
		live = min(live, q.flightFirst)
	}
	free := 0 // blocks are freed in the order they were filled
	for free < len(q.retired) && q.retired[free].end <= live {
		free++
	}
	spares, keep := 0, len(q.retired)-free+2
	var next []byte
	w := 0
	for r, blk := range q.retired {
		if r < free {
			reusable := cap(blk.mem) == arenaSize // not a block made for one large record
			if next == nil && reusable && need <= arenaSize {
				next = blk.mem
				continue
			}
			if !reusable || spares == keep {
				continue // dropped
			}
			spares++
		}
		q.retired[w] = blk
		w++
	}
	clear(q.retired[w:])
	q.retired = q.retired[:w]
	if next == nil {
		next = make([]byte, 0, max(arenaSize, need))
		q.made++
	}
	q.block = next
}

// grow doubles the ring, up to capacity.
func (q *queue) grow() {
	nb := make([][]byte, min(2*len(q.buf), q.capacity))
	for i := range q.n {
		nb[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = nb, 0
}

// take appends to dst up to maxEvents events from the front, which go
// into flight, stopping before their total size would exceed maxBytes (one
// event is always taken). The previous batch must have been resolved. The
// records stay readable until doneReading.
func (q *queue) take(dst [][]byte, maxEvents, maxBytes int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.flightFirst = q.pushed - uint64(q.n)
	q.reading = true
	taken, size := 0, 0
	for q.n > 0 && taken < maxEvents {
		ev := q.buf[q.head]
		n := q.size(ev) + 1 // and a comma
		if taken > 0 && size+n > maxBytes {
			break
		}
		size += n
		dst = append(dst, ev)
		taken++
		q.buf[q.head] = nil
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	q.flightN = taken
	return dst
}

// doneReading records that take's records will not be read again: their
// blocks may be reused.
func (q *queue) doneReading() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reading = false
}

// resolve records that the first k events in flight were sent, rejected or
// dropped.
func (q *queue) resolve(k int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	k = min(k, q.flightN)
	q.flightFirst += uint64(k)
	q.flightN -= k
	q.progressLocked()
}

func (q *queue) progressLocked() {
	if q.watched {
		close(q.progress)
		q.progress = make(chan struct{})
		q.watched = false
	}
}

// len returns the number of waiting events, not counting those in flight.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// pending returns the number of waiting and in-flight events.
func (q *queue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n + q.flightN
}

// counts returns the number of events queued so far, of those pushed out
// of the full buffer, and of those waiting or in flight.
func (q *queue) counts() (pushed, overflowed uint64, pending int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pushed, q.overflowed, q.n + q.flightN
}

// mark returns the seq the next pushed event will get: Flush waits for
// every event below it.
func (q *queue) mark() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pushed
}

// doneUpTo reports whether every event numbered below target has left the
// buffer and flight, and returns a channel closed at the next progress.
func (q *queue) doneUpTo(target uint64) (done bool, progress <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	waitingFrom := q.pushed - uint64(q.n)
	done = waitingFrom >= target && (q.flightN == 0 || q.flightFirst >= target)
	q.watched = q.watched || !done
	return done, q.progress
}

// close stops push from accepting events.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
}

// dropWaiting removes every waiting event (not those in flight) and returns
// how many there were.
func (q *queue) dropWaiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.n
	for i := range q.n {
		q.buf[(q.head+i)%len(q.buf)] = nil
	}
	q.head, q.n = 0, 0
	q.progressLocked()
	return n
}
