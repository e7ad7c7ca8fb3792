package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/flywheel-oss/flywheel"
)

// TestTranslateUnavailable: both a lost connection and a request that ran
// out of time are retryable (unavailable), and the message says which.
func TestTranslateUnavailable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{io.ErrUnexpectedEOF, "the database is unavailable; retry later"},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), "timeseries: the database did not answer within the request's time limit; retry later"},
	} {
		var fe *flywheel.Error
		if err := translate("timeseries", c.err); !errors.As(err, &fe) || fe.Code != flywheel.CodeUnavailable || fe.Message != c.want {
			t.Errorf("translate(%v) = %v, want unavailable %q", c.err, err, c.want)
		}
	}
	if err := translate("timeseries", errors.New("syntax error")); strings.Contains(err.Error(), "retry") {
		t.Errorf("translate(syntax error) = %v, want a non-retryable error", err)
	}
}
