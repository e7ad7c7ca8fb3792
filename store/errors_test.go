package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/flywheel-oss/flywheel"
)

// TestTranslateUnavailable: a lost connection, a request that ran out of
// time, a database out of disk space, memory or other resources, and a
// read-only one are all retryable (unavailable), and the message says which.
func TestTranslateUnavailable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{io.ErrUnexpectedEOF, "the database is unavailable; retry later"},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), "timeseries: the database did not answer within the request's time limit; retry later"},
		{&pgconn.PgError{Code: "53100", Message: `could not extend file "base/1/2": No space left on device`}, "the database is out of disk space; retry later"},
		{fmt.Errorf("copy: %w", &pgconn.PgError{Code: "25006", Message: "cannot execute COPY FROM in a read-only transaction"}),
			"the database is read-only (a standby, or default_transaction_read_only is on); retry later"},
		{&pgconn.PgError{Code: "53200", Message: "out of memory"}, "the database is out of memory; retry later"},
		{&pgconn.PgError{Code: "53400", Message: "configuration limit exceeded"}, "the database is out of resources; retry later"},
		{&pgconn.PgError{Code: "53300", Message: "too many clients"}, "the database is unavailable; retry later"},
	} {
		var fe *flywheel.Error
		if err := translate("timeseries", c.err); !errors.As(err, &fe) || fe.Code != flywheel.CodeUnavailable || fe.Message != c.want {
			t.Errorf("translate(%v) = %v, want unavailable %q", c.err, err, c.want)
		}
	}
	for _, err := range []error{errors.New("syntax error"), &pgconn.PgError{Code: "42601", Message: "syntax error"}, &pgconn.PgError{Code: "22P02"}} {
		if got := translate("timeseries", err); strings.Contains(got.Error(), "retry") || flywheel.Retryable(got) {
			t.Errorf("translate(%v) = %v, want a non-retryable error", err, got)
		}
	}
}
