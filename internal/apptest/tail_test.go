package apptest

import (
	"fmt"
	"strings"
	"testing"
)

func TestTailWriter(t *testing.T) {
	for _, c := range []struct {
		lines     int
		want      string // the first line kept
		wantCount int
		dropped   string
	}{
		{0, "(none)", 1, ""},
		{3, "line 0", 3, ""},
		{logTail, "line 0", logTail, ""},
		{logTail + 50, "line 50", logTail + 1, "(50 earlier lines left out)"},
		{5*logTail + 7, fmt.Sprintf("line %d", 4*logTail+7), logTail + 1, fmt.Sprintf("(%d earlier lines left out)", 4*logTail+7)},
	} {
		w := &tailWriter{}
		for i := range c.lines {
			fmt.Fprintf(w, "line %d\n", i)
		}
		got := strings.Split(w.String(), "\n")
		if len(got) != c.wantCount {
			t.Errorf("%d lines: kept %d lines, want %d", c.lines, len(got), c.wantCount)
			continue
		}
		if c.dropped != "" {
			if got[0] != c.dropped {
				t.Errorf("%d lines: first line %q, want %q", c.lines, got[0], c.dropped)
			}
			got = got[1:]
		}
		if got[0] != c.want {
			t.Errorf("%d lines: first kept %q, want %q", c.lines, got[0], c.want)
		}
		if c.lines > 0 && got[len(got)-1] != fmt.Sprintf("line %d", c.lines-1) {
			t.Errorf("%d lines: last kept %q", c.lines, got[len(got)-1])
		}
	}
}
