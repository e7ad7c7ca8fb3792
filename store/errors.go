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
)

// translate maps a driver error to a flywheel error by type and code:
// a lost or refused connection is unavailable (retryable), a constraint
// violation a conflict, anything else internal. op names the operation.
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
	if isUnavailable(err) {
		msg := "the database is unavailable; retry later"
		if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
			// A slow computation as often as an unreachable server.
			msg = op + ": the database did not answer within the request's time limit; retry later"
		}
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
		case pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", pe.Code == "53300": // shutdown, crash, starting, too many connections
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
