package api

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadAll reads bodies whose stated size is right, unknown, too small
// and too large, in small reads, and a body that fails: readAll returns
// what io.ReadAll returns.
func TestReadAll(t *testing.T) {
	body := strings.Repeat("0123456789", 300)
	for _, c := range []struct {
		name string
		size int64
	}{{"exact", 3000}, {"unknown", 0}, {"unknown, -1", -1}, {"stated too small", 1000}, {"stated too large", 5000}, {"one byte", 1}} {
		for _, half := range []bool{false, true} {
			var r io.Reader = strings.NewReader(body)
			if half {
				r = iotest.HalfReader(r)
			}
			got, err := readAll(r, c.size)
			if err != nil || string(got) != body {
				t.Errorf("%s (half reads %v): %d bytes, %v; want the %d bytes", c.name, half, len(got), err, len(body))
			}
		}
	}
	boom := errors.New("boom")
	got, err := readAll(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)), 10)
	if !errors.Is(err, boom) || !bytes.Equal(got, []byte("abc")) {
		t.Errorf("failing body: %q, %v; want abc, boom", got, err)
	}
}
