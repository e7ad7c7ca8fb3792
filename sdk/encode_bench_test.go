package sdk

import (
	"testing"
	"time"
)

var sinkBytes []byte

// BenchmarkAppendEvent is the encoding of a first call's exposure alone
// (the contract's four attributes), into a reused buffer.
func BenchmarkAppendEvent(b *testing.B) {
	ev := outEvent{typ: "exposure", experiment: benchKey, variant: "treatment", unitType: "customer", unitID: benchUnit, attributes: benchAttrs}
	buf := make([]byte, 0, 512)
	now := time.Now()
	id := newEventID(now)
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes, _ = appendEvent(buf[:0], id, now, &ev)
	}
}
