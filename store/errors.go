package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/flywheel-oss/flywheel"
)

// PostgreSQL error codes the store maps.
const (
	pgUniqueViolation    = "23505"
	pgExclusionViolation = "23P01"
	pgReadOnly           = "25006" // read_only_sql_transaction: a standby, or default_transaction_read_only
	pgDiskFull           = "53100"
	pgOutOfMemory        = "53200"
	pgTooManyConnections = "53300"
)

// translate maps a driver error to a flywheel error by type and code:
// a lost or refused connection, a database out of disk space or other
// resources, or read-only, is unavailable (retryable; see unavailable), a
// constraint violation a conflict, anything else internal. op names the
// operation.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	var fe *flywheel.Error
	if errors.As(err, &fe) {
		return err
	}
	if errors.Is(err, gorm.ErrRecordNotFound) || errors.Is(err, pgx.ErrNoRows) {
		return &flywheel.Error{Code: flywheel.CodeNotFound, Message: op + ": not found", Err: err}
	}
	if msg := unavailable(op, err); msg != "" {
		return &flywheel.Error{Code: flywheel.CodeUnavailable, Message: msg, Err: fmt.Errorf("store: %s: %w", op, err)}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case pgUniqueViolation, pgExclusionViolation:
			return &flywheel.Error{Code: flywheel.CodeConflict, Message: op + ": conflicts with existing data (" + pe.ConstraintName + ")", Err: err}
		}
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// unavailable returns the message of an unavailable (retryable) error when
// err means the database cannot do the work now but may later, or "" when
// the query itself is at fault. The message says why, for the client and
// the operator: unreachable, too slow, out of disk space or other
// resources, read-only. In every case nothing was written: the statement,
// and its transaction, failed.
func unavailable(op string, err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == pgDiskFull:
			return "the database is out of disk space; retry later"
		case pe.Code == pgOutOfMemory:
			return "the database is out of memory; retry later"
		case pe.Code == pgReadOnly:
			return "the database is read-only (a standby, or default_transaction_read_only is on); retry later"
		case len(pe.Code) == 5 && pe.Code[:2] == "53" && pe.Code != pgTooManyConnections: // insufficient resources
			return "the database is out of resources; retry later"
		}
	}
	if !isUnavailable(err) {
		return ""
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		// A slow computation as often as an unreachable server.
		return op + ": the database did not answer within the request's time limit; retry later"
	}
	return "the database is unavailable; retry later"
}

// isUnavailable reports whether err means the database cannot be reached
// now (so retrying later may succeed), rather than that the query is wrong.
func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	if pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case len(pe.Code) == 5 && pe.Code[:2] == "08": // connection exception
			return true
		case pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", pe.Code == pgTooManyConnections: // shutdown, crash, starting, too many connections
			return true
		case pe.Code == "40001", pe.Code == "40P01": // serialization failure, deadlock: retry
			return true
		}
	}
	return errors.Is(err, net.ErrClosed) || errors.Is(err, driver.ErrBadConn)
}

func isPgCode(err error, code string) (*pgconn.PgError, bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == code {
		return pe, true
	}
	return nil, false
}
