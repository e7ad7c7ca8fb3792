package api

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/flywheel-oss/flywheel/assign"
)

// csvAnswer writes the CSV answer: a header, then unit_id, variant (empty
// when not enrolled), enrolled (true/false), reason.
type csvAnswer struct {
	w      *csv.Writer
	header bool
	rec    [4]string
}

func newCSVAnswer(w io.Writer) *csvAnswer { return &csvAnswer{w: csv.NewWriter(w)} }

func (a *csvAnswer) write(unitID string, r assign.Result) error {
	if !a.header {
		a.header = true
		if err := a.w.Write([]string{"unit_id", "variant", "enrolled", "reason"}); err != nil {
			return err
		}
	}
	a.rec = [4]string{unitID, r.Variant, "false", string(r.Reason)} // a held-out unit: the control's variant, not enrolled
	if r.Enrolled {
		a.rec[2] = "true"
	}
	return a.w.Write(a.rec[:])
}

// flush ends the answer; an empty list still gets its header.
func (a *csvAnswer) flush() error {
	if !a.header {
		a.header = true
		if err := a.w.Write([]string{"unit_id", "variant", "enrolled", "reason"}); err != nil {
			return err
		}
	}
	a.w.Flush()
	return a.w.Error()
}

// appendJSONString appends s as a JSON string, as encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	if plain {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	raw, _ := json.Marshal(s) // a string always encodes
	return append(b, raw...)
}

func binaryAppendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func binaryReadUvarint(r *bufio.Reader) (uint64, error) { return binary.ReadUvarint(r) }

// campaignExposureID is the id of the exposure a list records for a unit:
// the same experiment, stored unit id and sent_at (zero when not given)
// always give the same id, so that a retried list is deduplicated by the
// ingestion path like any retried event. It has the shape of a UUIDv7: the
// first 48 bits are idTime in Unix milliseconds (sent_at, or the
// experiment's start when sent_at is not given), then version 7, then 74
// bits of SHA-256 of the inputs, with the RFC 9562 variant. The input
// format is a contract: changing it would record a retried list twice.
func campaignExposureID(experiment, storedUnitID string, sentAt, idTime time.Time) uuid.UUID {
	h := sha256.New()
	var sent int64
	if !sentAt.IsZero() {
		sent = sentAt.UnixMicro()
	}
	var buf [8]byte
	h.Write([]byte("flywheel campaign exposure v1\x00"))
	h.Write([]byte(experiment))
	h.Write([]byte{0})
	h.Write([]byte(storedUnitID))
	h.Write([]byte{0})
	binary.BigEndian.PutUint64(buf[:], uint64(sent))
	h.Write(buf[:])
	sum := h.Sum(nil)
	var u uuid.UUID
	ms := uint64(idTime.UnixMilli())
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	copy(u[6:], sum[:10])
	u[6] = 0x70 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return u
}
