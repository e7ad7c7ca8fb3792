package sdk

import "sync"

// queue is the bounded buffer of encoded events waiting to be sent. push
// never blocks on I/O: it takes a mutex that is only ever held to move a
// few slice headers. When the buffer is full, push drops the oldest waiting
// event. The delivery loop (the only consumer) takes a batch off the front,
// which stays "in flight", outside the buffer's bound, until resolve.
//
// Events are numbered in push order (seq). The buffer holds seqs
// [pushed-n, pushed); the batch in flight holds [flightFirst,
// flightFirst+flightN). Flush waits for every seq below a mark to leave
// both.
type queue struct {
	mu          sync.Mutex
	buf         [][]byte // ring of encoded events; grows up to capacity
	arena       []byte   // where push copies events: see push
	head, n     int
	capacity    int
	closed      bool
	pushed      uint64
	flightFirst uint64
	flightN     int
	progress    chan struct{} // closed and replaced whenever events leave
}

func newQueue(capacity int) *queue {
	return &queue{capacity: capacity, buf: make([][]byte, min(capacity, 64)), progress: make(chan struct{})}
}

// arenaSize is the size of the blocks push copies events into: one
// allocation per few hundred events instead of one per event, on the app's
// request path. A block is freed when the last event in it has left.
const arenaSize = 64 << 10

// push appends a copy of an encoded event (the caller keeps ev). It returns
// the number of waiting events, whether it pushed out the oldest one to make
// room, and false for ok when the queue is closed (the event is not
// queued). Queued events are never written again, so a request body may
// point into them.
func (q *queue) push(ev []byte) (waiting int, overflowed, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return q.n, false, false
	}
	if len(q.arena)+len(ev) > cap(q.arena) {
		q.arena = make([]byte, 0, max(arenaSize, len(ev)))
	}
	start := len(q.arena)
	q.arena = append(q.arena, ev...)
	ev = q.arena[start:len(q.arena):len(q.arena)]
	if q.n == q.capacity {
		q.buf[q.head] = nil
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		overflowed = true
		q.progressLocked()
	} else if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = ev
	q.n++
	q.pushed++
	return q.n, overflowed, true
}

// grow doubles the ring, up to capacity.
func (q *queue) grow() {
	nb := make([][]byte, min(2*len(q.buf), q.capacity))
	for i := range q.n {
		nb[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = nb, 0
}

// take moves up to maxEvents events from the front into flight, stopping
// before their total size would exceed maxBytes (one event is always
// taken). The previous batch must have been resolved.
func (q *queue) take(maxEvents, maxBytes int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.flightFirst = q.pushed - uint64(q.n)
	var out [][]byte
	size := 0
	for q.n > 0 && len(out) < maxEvents {
		ev := q.buf[q.head]
		if len(out) > 0 && size+len(ev)+1 > maxBytes {
			break
		}
		size += len(ev) + 1
		out = append(out, ev)
		q.buf[q.head] = nil
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	q.flightN = len(out)
	return out
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
	close(q.progress)
	q.progress = make(chan struct{})
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
