package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/assign"
)

// experimentRow is the experiments table; it never leaves the package.
type experimentRow struct {
	Key        string `gorm:"primaryKey"`
	Name       string
	Hypothesis string
	UnitType   string
	Status     string
	Variants   []byte `gorm:"type:jsonb"`
	Traffic    float64
	Layer      string
	LayerFrom  *int
	LayerTo    *int
	Salt       string
	Targeting  []byte `gorm:"type:jsonb"`
	Overrides  []byte `gorm:"type:jsonb"`
	Metrics    []byte `gorm:"type:jsonb"`
	Analysis   string
	Allocation string
	Bandit     []byte `gorm:"type:jsonb"`
	Revision   int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
	StartedAt  *time.Time
	StoppedAt  *time.Time
	ArchivedAt *time.Time
}

func (experimentRow) TableName() string { return "experiments" }

type historyRow struct {
	ExperimentKey string `gorm:"primaryKey"`
	ID            int64  `gorm:"primaryKey;autoIncrement"`
	At            time.Time
	Actor         string
	Action        string
	Changes       []byte `gorm:"type:jsonb"`
}

func (historyRow) TableName() string { return "experiment_history" }

func toExperimentRow(e *flywheel.Experiment) (*experimentRow, error) {
	r := &experimentRow{
		Key: e.Key, Name: e.Name, Hypothesis: e.Hypothesis, UnitType: e.UnitType,
		Status: string(e.Status), Traffic: e.Traffic, Layer: e.Layer, Salt: e.Salt,
		Analysis: string(e.Analysis), Revision: e.Revision, CreatedAt: e.CreatedAt,
		UpdatedAt: e.UpdatedAt, StartedAt: e.StartedAt, StoppedAt: e.StoppedAt, ArchivedAt: e.ArchivedAt,
	}
	if e.LayerRange != nil {
		r.LayerFrom, r.LayerTo = &e.LayerRange.From, &e.LayerRange.To
	}
	var err error
	if r.Variants, err = json.Marshal(e.Variants); err != nil {
		return nil, err
	}
	if r.Overrides, err = json.Marshal(e.Overrides); err != nil {
		return nil, err
	}
	if r.Metrics, err = json.Marshal(e.Metrics); err != nil {
		return nil, err
	}
	if len(e.Targeting) > 0 {
		r.Targeting = e.Targeting
	}
	r.Allocation = string(e.Allocation)
	if r.Allocation == "" {
		r.Allocation = string(flywheel.AllocationFixed)
	}
	if e.Bandit != nil {
		if r.Bandit, err = json.Marshal(e.Bandit); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *experimentRow) toDomain() (*flywheel.Experiment, error) {
	e := &flywheel.Experiment{
		Key: r.Key, Name: r.Name, Hypothesis: r.Hypothesis, UnitType: r.UnitType,
		Status: flywheel.Status(r.Status), Traffic: r.Traffic, Layer: r.Layer, Salt: r.Salt,
		Analysis: flywheel.Analysis(r.Analysis), Revision: r.Revision, CreatedAt: r.CreatedAt.UTC(),
		UpdatedAt: r.UpdatedAt.UTC(), StartedAt: utcPtr(r.StartedAt), StoppedAt: utcPtr(r.StoppedAt), ArchivedAt: utcPtr(r.ArchivedAt),
	}
	if r.LayerFrom != nil && r.LayerTo != nil {
		e.LayerRange = &assign.LayerRange{From: *r.LayerFrom, To: *r.LayerTo}
	}
	if err := json.Unmarshal(r.Variants, &e.Variants); err != nil {
		return nil, fmt.Errorf("store: experiment %q variants: %w", r.Key, err)
	}
	if err := json.Unmarshal(r.Overrides, &e.Overrides); err != nil {
		return nil, fmt.Errorf("store: experiment %q overrides: %w", r.Key, err)
	}
	if err := json.Unmarshal(r.Metrics, &e.Metrics); err != nil {
		return nil, fmt.Errorf("store: experiment %q metrics: %w", r.Key, err)
	}
	if len(r.Targeting) > 0 && string(r.Targeting) != "null" {
		e.Targeting = json.RawMessage(r.Targeting)
	}
	e.Allocation = flywheel.Allocation(r.Allocation)
	if len(r.Bandit) > 0 && string(r.Bandit) != "null" {
		e.Bandit = new(flywheel.BanditSettings)
		if err := json.Unmarshal(r.Bandit, e.Bandit); err != nil {
			return nil, fmt.Errorf("store: experiment %q bandit: %w", r.Key, err)
		}
	}
	e.Normalize()
	return e, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// CreateExperiment stores a new experiment (already validated), allocating
// its layer range when it has a layer and no range: the first free gap of
// layerShare·10000 buckets, or the largest free gap when layerShare is 0.
func (db *DB) CreateExperiment(ctx context.Context, e *flywheel.Experiment, layerShare float64, actor string) (*flywheel.Experiment, error) {
	out := *e
	err := db.tx(ctx, func(tx *gorm.DB) error {
		if err := allocateLayer(tx, &out, layerShare); err != nil {
			return err
		}
		rev, err := bumpRevision(tx)
		if err != nil {
			return err
		}
		if err := checkAudienceRefs(tx, out.Targeting); err != nil {
			return err
		}
		if err := checkLiveRoom(tx, "experiments", flywheel.MaxLiveExperiments); err != nil {
			return err
		}
		now := db.now()
		out.Revision, out.CreatedAt, out.UpdatedAt = rev, now, now
		row, err := toExperimentRow(&out)
		if err != nil {
			return err
		}
		if err := tx.Create(row).Error; err != nil {
			if _, ok := isPgCode(err, pgUniqueViolation); ok {
				return flywheel.Errorf(flywheel.CodeConflict, "experiment %q already exists", e.Key)
			}
			return err
		}
		return addHistory(tx, out.Key, actor, "create", flywheel.DiffExperiments(&flywheel.Experiment{}, &out), now)
	})
	if err != nil {
		return nil, translateLayer("create experiment", err, &out)
	}
	return &out, nil
}

// translateLayer turns an exclusion violation into a conflict that says
// which layer is at fault.
func translateLayer(op string, err error, e *flywheel.Experiment) error {
	if _, ok := isPgCode(err, pgExclusionViolation); ok {
		return &flywheel.Error{Code: flywheel.CodeConflict, Field: "layer_range",
			Message: fmt.Sprintf("layer_range overlaps another draft or running experiment of layer %q", e.Layer), Err: err}
	}
	return translate(op, err)
}

// FindExperimentByKey returns one experiment or not_found.
func (db *DB) FindExperimentByKey(ctx context.Context, key string) (*flywheel.Experiment, error) {
	var row experimentRow
	if err := db.gorm.WithContext(ctx).Take(&row, "key = ?", key).Error; err != nil {
		if errIsNotFound(err) {
			return nil, flywheel.Errorf(flywheel.CodeNotFound, "experiment %q not found", key)
		}
		return nil, translate("find experiment", err)
	}
	return row.toDomain()
}

// ListExperiments returns a page of experiments ordered by key. Without a
// status filter, archived experiments are left out.
func (db *DB) ListExperiments(ctx context.Context, f flywheel.ExperimentFilter) (flywheel.Page[flywheel.Experiment], error) {
	return statusPage[flywheel.Experiment, experimentRow](ctx, db.gorm, f.Status, f.Cursor, f.Limit)
}

// statusRow is a row of a table listed by key with a status filter
// (experiments, holdouts).
type statusRow[T, R any] interface {
	*R
	rowKey() string
	toDomain() (*T, error)
}

// statusPage returns a page of R's table ordered by key: without a status,
// the archived rows are left out; "all" lists every row.
func statusPage[T, R any, PR statusRow[T, R]](ctx context.Context, db *gorm.DB, status flywheel.Status, cursor string, limit int) (flywheel.Page[T], error) {
	var page flywheel.Page[T]
	limit = clampLimit(limit)
	q := db.WithContext(ctx).Order("key").Limit(limit + 1)
	switch status {
	case "":
		q = q.Where("status <> ?", flywheel.StatusArchived)
	case "all":
	default:
		q = q.Where("status = ?", status)
	}
	if cursor != "" {
		after, err := decodeCursor(cursor)
		if err != nil {
			return page, err
		}
		q = q.Where("key > ?", after)
	}
	var rows []R
	if err := q.Find(&rows).Error; err != nil {
		return page, translate("list", err)
	}
	page.Items = make([]T, 0, min(len(rows), limit))
	for i := range rows {
		if i == limit {
			page.NextCursor = encodeCursor(PR(&rows[i-1]).rowKey())
			break
		}
		v, err := PR(&rows[i]).toDomain()
		if err != nil {
			return page, err
		}
		page.Items = append(page.Items, *v)
	}
	return page, nil
}

func (r *experimentRow) rowKey() string { return r.Key }

// UpdateExperiment applies mutate to the experiment under a row lock and
// stores the result with an audit row. An unchanged experiment is not
// written.
func (db *DB) UpdateExperiment(ctx context.Context, key, action, actor string, mutate func(*flywheel.Experiment) error) (*flywheel.Experiment, error) {
	var out *flywheel.Experiment
	err := db.tx(ctx, func(tx *gorm.DB) error {
		var row experimentRow
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Take(&row, "key = ?", key).Error; err != nil {
			if errIsNotFound(err) {
				return flywheel.Errorf(flywheel.CodeNotFound, "experiment %q not found", key)
			}
			return err
		}
		before, err := row.toDomain()
		if err != nil {
			return err
		}
		e, err := row.toDomain() // a separate copy for mutate
		if err != nil {
			return err
		}
		if err := mutate(e); err != nil {
			return err
		}
		e.Key = before.Key
		if e.Status == flywheel.StatusDraft || e.Status == flywheel.StatusRunning {
			if err := allocateLayer(tx, e, 0); err != nil {
				return err
			}
		}
		changes := flywheel.DiffExperiments(before, e)
		out = e
		if len(changes) == 0 {
			return nil
		}
		rev, err := bumpRevision(tx)
		if err != nil {
			return err
		}
		if _, ok := changes["targeting"]; ok {
			if err := checkAudienceRefs(tx, e.Targeting); err != nil {
				return err
			}
		}
		now := db.now()
		e.Revision, e.UpdatedAt = rev, now
		nr, err := toExperimentRow(e)
		if err != nil {
			return err
		}
		if err := tx.Select("*").Omit("created_at").Save(nr).Error; err != nil {
			return err
		}
		return addHistory(tx, key, actor, action, changes, now)
	})
	if err != nil {
		e := out
		if e == nil {
			e = &flywheel.Experiment{}
		}
		return nil, translateLayer("update experiment", err, e)
	}
	return out, nil
}

func addHistory(tx *gorm.DB, key, actor, action string, changes map[string]flywheel.FieldChange, at time.Time) error {
	raw, err := json.Marshal(changes)
	if err != nil {
		return err
	}
	return tx.Create(&historyRow{ExperimentKey: key, At: at, Actor: actor, Action: action, Changes: raw}).Error
}

// ExperimentHistory returns the audit log of one experiment, oldest first.
func (db *DB) ExperimentHistory(ctx context.Context, key string, limit int, cursor string) (flywheel.Page[flywheel.HistoryEntry], error) {
	if _, err := db.FindExperimentByKey(ctx, key); err != nil {
		return flywheel.Page[flywheel.HistoryEntry]{}, err
	}
	return historyPage[historyRow](ctx, db.gorm, "experiment_key", key, limit, cursor)
}

// auditRow is a row of one of the audit logs (experiments, audiences,
// holdouts): each is read a page at a time by historyPage.
type auditRow interface {
	historyRow | audienceHistoryRow | holdoutHistoryRow
	entry() (flywheel.HistoryEntry, error)
}

// historyPage returns a page of the audit log of R's table for the thing
// whose key column (a constant of the caller's) is key, oldest first.
func historyPage[R auditRow](ctx context.Context, db *gorm.DB, column, key string, limit int, cursor string) (flywheel.Page[flywheel.HistoryEntry], error) {
	var page flywheel.Page[flywheel.HistoryEntry]
	limit = clampLimit(limit)
	q, err := afterID(db.WithContext(ctx).Where(column+" = ?", key).Order("id").Limit(limit+1), cursor)
	if err != nil {
		return page, err
	}
	var rows []R
	if err := q.Find(&rows).Error; err != nil {
		return page, translate("history", err)
	}
	page.Items = make([]flywheel.HistoryEntry, 0, min(len(rows), limit))
	for i, r := range rows {
		if i == limit {
			page.NextCursor = encodeCursor(fmt.Sprint(page.Items[i-1].ID))
			break
		}
		h, err := r.entry()
		if err != nil {
			return page, err
		}
		page.Items = append(page.Items, h)
	}
	return page, nil
}

func (r historyRow) entry() (flywheel.HistoryEntry, error) {
	h := flywheel.HistoryEntry{ID: r.ID, At: r.At.UTC(), Actor: r.Actor, Action: r.Action}
	if err := json.Unmarshal(r.Changes, &h.Changes); err != nil {
		return h, fmt.Errorf("store: history %d: %w", r.ID, err)
	}
	return h, nil
}

// ListLiveExperiments returns every experiment that is not archived, and
// the configuration revision, read in one snapshot.
func (db *DB) ListLiveExperiments(ctx context.Context) ([]flywheel.Experiment, int64, error) {
	var out []flywheel.Experiment
	var rev int64
	err := db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").Error; err != nil {
			return err
		}
		if err := tx.Raw(`SELECT revision FROM config_state WHERE id = 1`).Scan(&rev).Error; err != nil {
			return err
		}
		var rows []experimentRow
		if err := tx.Where("status <> ?", flywheel.StatusArchived).Order("key").Find(&rows).Error; err != nil {
			return err
		}
		out = make([]flywheel.Experiment, 0, len(rows))
		for i := range rows {
			e, err := rows[i].toDomain()
			if err != nil {
				return err
			}
			out = append(out, *e)
		}
		return nil
	})
	if err != nil {
		return nil, 0, translate("list live experiments", err)
	}
	return out, rev, nil
}

// allocateLayer gives e a free range of its layer when it has a layer and
// no range. It holds a transaction-scoped advisory lock on the layer so
// that two allocations cannot pick the same gap; the exclusion constraint
// on the table is the last line of defence.
func allocateLayer(tx *gorm.DB, e *flywheel.Experiment, share float64) error {
	if e.Layer == "" {
		e.LayerRange = nil
		return nil
	}
	if err := tx.Exec(`SELECT pg_advisory_xact_lock(hashtext('flywheel.layer:' || ?))`, e.Layer).Error; err != nil {
		return err
	}
	if e.LayerRange != nil {
		return nil
	}
	var taken []struct{ LayerFrom, LayerTo int }
	if err := tx.Raw(`SELECT layer_from, layer_to FROM experiments
		WHERE layer = ? AND key <> ? AND status IN ('draft', 'running') ORDER BY layer_from`, e.Layer, e.Key).Scan(&taken).Error; err != nil {
		return err
	}
	want := 0
	if share > 0 {
		want = int(math.Round(share * assign.Buckets))
		if want < 1 {
			want = 1
		}
	}
	best, pos := assign.LayerRange{}, 0
	for _, t := range append(taken, struct{ LayerFrom, LayerTo int }{assign.Buckets, assign.Buckets}) {
		if gap := t.LayerFrom - pos; gap > 0 {
			if want > 0 && gap >= want {
				best = assign.LayerRange{From: pos, To: pos + want}
				break
			}
			if want == 0 && gap > best.To-best.From {
				best = assign.LayerRange{From: pos, To: t.LayerFrom}
			}
		}
		pos = max(pos, t.LayerTo)
	}
	if best.To == best.From {
		msg := fmt.Sprintf("layer %q is full: every bucket belongs to a draft or running experiment", e.Layer)
		if want > 0 {
			msg = fmt.Sprintf("layer %q has no free range of %d buckets", e.Layer, want)
		}
		return &flywheel.Error{Code: flywheel.CodeConflict, Field: "layer", Message: msg}
	}
	e.LayerRange = &best
	return nil
}

const (
	defaultLimit = 50
	maxLimit     = 500
)

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return defaultLimit
	case n > maxLimit:
		return maxLimit
	}
	return n
}

func encodeCursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// afterID restricts q, a query ordered by id, to the rows after the id a
// cursor of a previous page names (none: q itself).
func afterID(q *gorm.DB, cursor string) (*gorm.DB, error) {
	if cursor == "" {
		return q, nil
	}
	after, err := decodeCursor(cursor)
	if err != nil {
		return nil, err
	}
	var id int64
	if _, err := fmt.Sscan(after, &id); err != nil {
		return nil, flywheel.Invalid("cursor", "invalid cursor")
	}
	return q.Where("id > ?", id), nil
}

func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", flywheel.Invalid("cursor", "invalid cursor")
	}
	return string(b), nil
}

func errIsNotFound(err error) bool { return errors.Is(err, gorm.ErrRecordNotFound) }

// checkLiveRoom refuses one more row in table (experiments or holdouts)
// when max of its rows are not archived. It is called after bumpRevision,
// whose row lock orders concurrent creations: each counts the ones
// committed before it.
func checkLiveRoom(tx *gorm.DB, table string, max int) error {
	var live int64
	if err := tx.Raw(`SELECT count(*) FROM `+table+` WHERE status <> ?`, flywheel.StatusArchived).Scan(&live).Error; err != nil {
		return err
	}
	if live >= int64(max) {
		return flywheel.Errorf(flywheel.CodeConflict, "there are already %d %s that are not archived, the most there may be: archive one first", live, table)
	}
	return nil
}
