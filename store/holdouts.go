package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/flywheel-oss/flywheel"
)

// holdoutRow is the holdouts table; it never leaves the package.
type holdoutRow struct {
	Key         string `gorm:"primaryKey"`
	Name        string
	Description string
	UnitType    string
	Fraction    float64
	Experiments []byte `gorm:"type:jsonb"`
	Layers      []byte `gorm:"type:jsonb"`
	Metrics     []byte `gorm:"type:jsonb"`
	Status      string
	Revision    int64
	CreatedAt   time.Time
	UpdatedAt   time.Time
	StartedAt   *time.Time
	StoppedAt   *time.Time
	ArchivedAt  *time.Time
}

func (holdoutRow) TableName() string { return "holdouts" }

type holdoutHistoryRow struct {
	HoldoutKey string `gorm:"primaryKey"`
	ID         int64  `gorm:"primaryKey;autoIncrement"`
	At         time.Time
	Actor      string
	Action     string
	Changes    []byte `gorm:"type:jsonb"`
}

func (holdoutHistoryRow) TableName() string { return "holdout_history" }

func toHoldoutRow(h *flywheel.Holdout) (*holdoutRow, error) {
	r := &holdoutRow{Key: h.Key, Name: h.Name, Description: h.Description, UnitType: h.UnitType, Fraction: h.Fraction,
		Status: string(h.Status), Revision: h.Revision, CreatedAt: h.CreatedAt, UpdatedAt: h.UpdatedAt,
		StartedAt: h.StartedAt, StoppedAt: h.StoppedAt, ArchivedAt: h.ArchivedAt}
	var err error
	if r.Experiments, err = json.Marshal(h.Experiments); err != nil {
		return nil, err
	}
	if r.Layers, err = json.Marshal(h.Layers); err != nil {
		return nil, err
	}
	if r.Metrics, err = json.Marshal(h.Metrics); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *holdoutRow) toDomain() (*flywheel.Holdout, error) {
	h := &flywheel.Holdout{Key: r.Key, Name: r.Name, Description: r.Description, UnitType: r.UnitType, Fraction: r.Fraction,
		Status: flywheel.Status(r.Status), Revision: r.Revision, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		StartedAt: utcPtr(r.StartedAt), StoppedAt: utcPtr(r.StoppedAt), ArchivedAt: utcPtr(r.ArchivedAt)}
	for _, f := range []struct {
		raw []byte
		dst any
	}{{r.Experiments, &h.Experiments}, {r.Layers, &h.Layers}, {r.Metrics, &h.Metrics}} {
		if err := json.Unmarshal(f.raw, f.dst); err != nil {
			return nil, fmt.Errorf("store: holdout %q: %w", r.Key, err)
		}
	}
	h.Normalize()
	return h, nil
}

// liveExperimentKeys returns the keys of the experiments that are not
// archived.
func liveExperimentKeys(tx *gorm.DB) (map[string]bool, error) {
	var keys []string
	if err := tx.Raw(`SELECT key FROM experiments WHERE status <> ?`, flywheel.StatusArchived).Scan(&keys).Error; err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(keys))
	for _, k := range keys {
		out[k] = true
	}
	return out, nil
}

// CreateHoldout validates h (its experiments against the ones not
// archived, as committed now) and stores it as a draft with an audit row.
func (db *DB) CreateHoldout(ctx context.Context, h *flywheel.Holdout, metricExists func(string) bool, actor string) (*flywheel.Holdout, error) {
	out := *h
	out.Status = flywheel.StatusDraft
	out.Normalize()
	err := db.tx(ctx, func(tx *gorm.DB) error {
		// The revision's row lock orders this with experiment writes.
		rev, err := bumpRevision(tx)
		if err != nil {
			return err
		}
		exps, err := liveExperimentKeys(tx)
		if err != nil {
			return err
		}
		if err := out.Validate(metricExists, func(k string) bool { return exps[k] }); err != nil {
			return err
		}
		if err := checkLiveRoom(tx, "holdouts", flywheel.MaxLiveHoldouts); err != nil {
			return err
		}
		now := db.now()
		out.Revision, out.CreatedAt, out.UpdatedAt = rev, now, now
		out.StartedAt, out.StoppedAt, out.ArchivedAt = nil, nil, nil
		row, err := toHoldoutRow(&out)
		if err != nil {
			return err
		}
		if err := tx.Create(row).Error; err != nil {
			if _, ok := isPgCode(err, pgUniqueViolation); ok {
				return &flywheel.Error{Code: flywheel.CodeConflict, Field: "key", Message: fmt.Sprintf("holdout %q already exists (archived holdouts keep their key)", h.Key)}
			}
			return err
		}
		return addHoldoutHistory(tx, out.Key, actor, "create", flywheel.DiffHoldouts(&flywheel.Holdout{}, &out), now)
	})
	if err != nil {
		return nil, translate("create holdout", err)
	}
	return db.FindHoldoutByKey(ctx, out.Key)
}

// FindHoldoutByKey returns one holdout (archived or not) or not_found.
func (db *DB) FindHoldoutByKey(ctx context.Context, key string) (*flywheel.Holdout, error) {
	var row holdoutRow
	if err := db.gorm.WithContext(ctx).Take(&row, "key = ?", key).Error; err != nil {
		if errIsNotFound(err) {
			return nil, flywheel.Errorf(flywheel.CodeNotFound, "holdout %q not found", key)
		}
		return nil, translate("find holdout", err)
	}
	return row.toDomain()
}

// ListHoldouts returns a page of holdouts ordered by key. Without a status
// filter, archived holdouts are left out.
func (db *DB) ListHoldouts(ctx context.Context, f flywheel.HoldoutFilter) (flywheel.Page[flywheel.Holdout], error) {
	return statusPage[flywheel.Holdout, holdoutRow](ctx, db.gorm, f.Status, f.Cursor, f.Limit)
}

func (r *holdoutRow) rowKey() string { return r.Key }

// UpdateHoldout applies mutate to the holdout under a row lock, validates
// the result (experiments it newly lists must exist and not be archived;
// ones it kept may have been archived since), and stores it with an audit
// row and a new configuration revision. An unchanged holdout is not
// written.
func (db *DB) UpdateHoldout(ctx context.Context, key, action, actor string, mutate func(*flywheel.Holdout) error, metricExists func(string) bool) (*flywheel.Holdout, error) {
	var out *flywheel.Holdout
	err := db.tx(ctx, func(tx *gorm.DB) error {
		// The revision first: the lock every configuration write queues on.
		rev, err := bumpRevision(tx)
		if err != nil {
			return err
		}
		var row holdoutRow
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Take(&row, "key = ?", key).Error; err != nil {
			if errIsNotFound(err) {
				return flywheel.Errorf(flywheel.CodeNotFound, "holdout %q not found", key)
			}
			return err
		}
		before, err := row.toDomain()
		if err != nil {
			return err
		}
		h, err := row.toDomain()
		if err != nil {
			return err
		}
		if err := mutate(h); err != nil {
			return err
		}
		h.Key = before.Key
		changes := flywheel.DiffHoldouts(before, h)
		out = h
		if len(changes) == 0 {
			return errUnchanged
		}
		if h.Status != flywheel.StatusArchived {
			exps, err := liveExperimentKeys(tx)
			if err != nil {
				return err
			}
			had := map[string]bool{}
			for _, k := range before.Experiments {
				had[k] = true
			}
			if err := h.Validate(metricExists, func(k string) bool { return exps[k] || had[k] }); err != nil {
				return err
			}
		}
		now := db.now()
		h.Revision, h.UpdatedAt = rev, now
		nr, err := toHoldoutRow(h)
		if err != nil {
			return err
		}
		if err := tx.Select("*").Omit("created_at").Save(nr).Error; err != nil {
			return err
		}
		return addHoldoutHistory(tx, key, actor, action, changes, now)
	})
	if err == errUnchanged {
		return out, nil // rolled back: not even the revision moved
	}
	if err != nil {
		return nil, translate("update holdout", err)
	}
	return out, nil
}

// errUnchanged rolls back a transaction that found nothing to change.
var errUnchanged = fmt.Errorf("store: unchanged")

func addHoldoutHistory(tx *gorm.DB, key, actor, action string, changes map[string]flywheel.FieldChange, at time.Time) error {
	raw, err := json.Marshal(changes)
	if err != nil {
		return err
	}
	return tx.Create(&holdoutHistoryRow{HoldoutKey: key, At: at, Actor: actor, Action: action, Changes: raw}).Error
}

// HoldoutHistory returns the audit log of one holdout, oldest first.
func (db *DB) HoldoutHistory(ctx context.Context, key string, limit int, cursor string) (flywheel.Page[flywheel.HistoryEntry], error) {
	if _, err := db.FindHoldoutByKey(ctx, key); err != nil {
		return flywheel.Page[flywheel.HistoryEntry]{}, err
	}
	return historyPage[holdoutHistoryRow](ctx, db.gorm, "holdout_key", key, limit, cursor)
}

func (r holdoutHistoryRow) entry() (flywheel.HistoryEntry, error) {
	h := flywheel.HistoryEntry{ID: r.ID, At: r.At.UTC(), Actor: r.Actor, Action: r.Action}
	if err := json.Unmarshal(r.Changes, &h.Changes); err != nil {
		return h, fmt.Errorf("store: holdout history %d: %w", r.ID, err)
	}
	return h, nil
}

// LiveHoldouts returns every holdout that is not archived, by key.
func (db *DB) LiveHoldouts(ctx context.Context) ([]flywheel.Holdout, error) {
	var rows []holdoutRow
	if err := db.gorm.WithContext(ctx).Where("status <> ?", flywheel.StatusArchived).Order("key").Find(&rows).Error; err != nil {
		return nil, translate("live holdouts", err)
	}
	out := make([]flywheel.Holdout, 0, len(rows))
	for i := range rows {
		h, err := rows[i].toDomain()
		if err != nil {
			return nil, err
		}
		out = append(out, *h)
	}
	return out, nil
}
