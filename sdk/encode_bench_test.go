package sdk

import (
	"testing"
	"time"
)

var sinkBytes []byte

// benchExposure is a first call's exposure: the contract's four attributes.
var benchExposure = outEvent{typ: "exposure", experiment: benchKey, variant: "treatment", unitType: "customer", unitID: benchUnit, attributes: benchAttrs}

// BenchmarkAppendRecord is the app's share of recording an exposure: its
// record, into a reused buffer.
func BenchmarkAppendRecord(b *testing.B) {
	buf := make([]byte, 0, 512)
	now := time.Now().UnixNano()
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes, _ = appendRecord(buf[:0], now, &benchExposure)
	}
}

// BenchmarkRecordJSON is the delivery goroutine's share: the exposure's id
// and JSON, from its record.
func BenchmarkRecordJSON(b *testing.B) {
	rec, err := appendRecord(nil, time.Now().UnixNano(), &benchExposure)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = appendRecordJSON(buf[:0], rec, newEventID(recordTime(rec)))
	}
}
