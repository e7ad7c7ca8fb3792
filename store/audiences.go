package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/assign"
)

// audienceRow is the audiences table; it never leaves the package.
type audienceRow struct {
	Key        string `gorm:"primaryKey"`
	Name       string
	Condition  []byte `gorm:"type:jsonb"`
	CreatedAt  time.Time
	UpdatedAt  time.Time
	ArchivedAt *time.Time
}

func (audienceRow) TableName() string { return "audiences" }

type audienceHistoryRow struct {
	AudienceKey         string `gorm:"primaryKey"`
	ID                  int64  `gorm:"primaryKey;autoIncrement"`
	At                  time.Time
	Actor               string
	Action              string
	Changes             []byte `gorm:"type:jsonb"`
	AffectedExperiments []byte `gorm:"type:jsonb"`
}

func (audienceHistoryRow) TableName() string { return "audience_history" }

func (r *audienceRow) toDomain() *flywheel.Audience {
	return &flywheel.Audience{Key: r.Key, Name: r.Name, Condition: json.RawMessage(r.Condition),
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), ArchivedAt: utcPtr(r.ArchivedAt)}
}

// liveAudiences reads the condition of every audience that is not
// archived (all of them when archived is true), by key.
func liveAudiences(tx *gorm.DB, archived bool) (assign.Audiences, error) {
	var rows []audienceRow
	q := tx.Select("key", "condition")
	if !archived {
		q = q.Where("archived_at IS NULL")
	}
	if err := q.Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make(assign.Audiences, len(rows))
	for _, r := range rows {
		out[r.Key] = json.RawMessage(r.Condition)
	}
	return out, nil
}

// audienceUsers returns the keys of the experiments (of the given
// statuses) and of the audiences whose conditions use audience key,
// directly or through other audiences of auds.
func audienceUsers(tx *gorm.DB, key string, auds assign.Audiences, statuses ...flywheel.Status) (exps, audiences []string, err error) {
	var rows []struct {
		Key       string
		Targeting []byte
	}
	if err := tx.Raw(`SELECT key, targeting FROM experiments WHERE status IN ? AND targeting IS NOT NULL ORDER BY key`, statuses).Scan(&rows).Error; err != nil {
		return nil, nil, err
	}
	for _, r := range rows {
		if slices.Contains(assign.ConditionAudiences(r.Targeting, auds), key) {
			exps = append(exps, r.Key)
		}
	}
	for k, cond := range auds {
		if k != key && slices.Contains(assign.ConditionAudiences(cond, auds), key) {
			audiences = append(audiences, k)
		}
	}
	slices.Sort(audiences)
	return exps, audiences, nil
}

// sameJSON reports whether two JSON documents are equal as values.
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	ca, _ := json.Marshal(va)
	cb, _ := json.Marshal(vb)
	return bytes.Equal(ca, cb)
}

// CreateAudience validates a against the stored audiences and stores it.
func (db *DB) CreateAudience(ctx context.Context, a *flywheel.Audience, actor string) (*flywheel.Audience, error) {
	out := *a
	err := db.tx(ctx, func(tx *gorm.DB) error {
		// The revision's row lock orders every change of audiences and
		// experiments, so validation sees the committed ones. A new
		// audience is used by nothing: the revision stays.
		if err := lockRevision(tx); err != nil {
			return err
		}
		others, err := liveAudiences(tx, false)
		if err != nil {
			return err
		}
		if err := out.Validate(others); err != nil {
			return err
		}
		if len(others) >= flywheel.MaxLiveAudiences {
			return flywheel.Errorf(flywheel.CodeConflict, "there are already %d audiences that are not archived, the most there may be: archive one first", len(others))
		}
		now := db.now()
		out.CreatedAt, out.UpdatedAt, out.ArchivedAt = now, now, nil
		row := &audienceRow{Key: out.Key, Name: out.Name, Condition: out.Condition, CreatedAt: now, UpdatedAt: now}
		if err := tx.Create(row).Error; err != nil {
			if _, ok := isPgCode(err, pgUniqueViolation); ok {
				return &flywheel.Error{Code: flywheel.CodeConflict, Field: "key", Message: fmt.Sprintf("audience %q already exists (archived audiences keep their key)", a.Key)}
			}
			return err
		}
		changes := map[string]flywheel.FieldChange{
			"name":      {From: nil, To: out.Name},
			"condition": {From: nil, To: json.RawMessage(out.Condition)},
		}
		return addAudienceHistory(tx, out.Key, actor, "create", changes, nil, now)
	})
	if err != nil {
		return nil, translate("create audience", err)
	}
	return db.FindAudienceByKey(ctx, out.Key)
}

// FindAudienceByKey returns one audience (archived or not) or not_found.
func (db *DB) FindAudienceByKey(ctx context.Context, key string) (*flywheel.Audience, error) {
	var row audienceRow
	if err := db.gorm.WithContext(ctx).Take(&row, "key = ?", key).Error; err != nil {
		if errIsNotFound(err) {
			return nil, flywheel.Errorf(flywheel.CodeNotFound, "audience %q not found", key)
		}
		return nil, translate("find audience", err)
	}
	return row.toDomain(), nil
}

// AudienceUsage names the experiments that are not archived and the live
// audiences that use audience key (see flywheel.AudienceStore).
func (db *DB) AudienceUsage(ctx context.Context, key string) (*flywheel.AudienceUsers, error) {
	out := &flywheel.AudienceUsers{Experiments: []string{}, Audiences: []string{}}
	err := db.tx(ctx, func(tx *gorm.DB) error {
		live, err := liveAudiences(tx, false)
		if err != nil {
			return err
		}
		exps, auds, err := audienceUsers(tx, key, live, flywheel.StatusDraft, flywheel.StatusRunning, flywheel.StatusStopped)
		if err != nil {
			return err
		}
		out.Experiments = append(out.Experiments, exps...)
		out.Audiences = append(out.Audiences, auds...)
		return nil
	})
	if err != nil {
		return nil, translate("audience usage", err)
	}
	return out, nil
}

// ListAudiences returns a page of audiences ordered by key; archived ones
// only when f.Archived.
func (db *DB) ListAudiences(ctx context.Context, f flywheel.AudienceFilter) (flywheel.Page[flywheel.Audience], error) {
	var page flywheel.Page[flywheel.Audience]
	limit := clampLimit(f.Limit)
	q := db.gorm.WithContext(ctx).Order("key").Limit(limit + 1)
	if !f.Archived {
		q = q.Where("archived_at IS NULL")
	}
	if f.Cursor != "" {
		after, err := decodeCursor(f.Cursor)
		if err != nil {
			return page, err
		}
		q = q.Where("key > ?", after)
	}
	var rows []audienceRow
	if err := q.Find(&rows).Error; err != nil {
		return page, translate("list audiences", err)
	}
	page.Items = make([]flywheel.Audience, 0, len(rows))
	for i := range rows {
		if i == limit {
			page.NextCursor = encodeCursor(rows[i-1].Key)
			break
		}
		page.Items = append(page.Items, *rows[i].toDomain())
	}
	return page, nil
}

// lockLiveAudience takes the configuration revision's row lock (the lock
// that audience and experiment writes queue on), moving the revision when
// bump is set, and locks the audience's row; an archived one is a
// conflict, worded "audience KEY <archived>".
func lockLiveAudience(tx *gorm.DB, key, archived string, bump bool) (*audienceRow, error) {
	if bump {
		if _, err := bumpRevision(tx); err != nil {
			return nil, err
		}
	} else if err := lockRevision(tx); err != nil {
		return nil, err
	}
	var row audienceRow
	if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Take(&row, "key = ?", key).Error; err != nil {
		if errIsNotFound(err) {
			return nil, flywheel.Errorf(flywheel.CodeNotFound, "audience %q not found", key)
		}
		return nil, err
	}
	if row.ArchivedAt != nil {
		return nil, flywheel.Errorf(flywheel.CodeConflict, "audience %q %s", key, archived)
	}
	return &row, nil
}

// UpdateAudience applies p to the audience under a row lock, validates the
// result against the other audiences that are not archived (a cycle
// through it included), and stores it with an audit row naming the
// running experiments that use it. The configuration revision moves, so
// SDKs fetch the new condition. An unchanged audience is not written.
func (db *DB) UpdateAudience(ctx context.Context, key string, p flywheel.AudiencePatch, actor string) (*flywheel.AudienceChange, error) {
	var affected []string
	err := db.tx(ctx, func(tx *gorm.DB) error {
		row, err := lockLiveAudience(tx, key, "is archived and cannot change", true)
		if err != nil {
			return err
		}
		before := row.toDomain()
		a := row.toDomain()
		p.Apply(a)
		others, err := liveAudiences(tx, false)
		if err != nil {
			return err
		}
		delete(others, key)
		if err := a.Validate(others); err != nil {
			return err
		}
		changes := map[string]flywheel.FieldChange{}
		if a.Name != before.Name {
			changes["name"] = flywheel.FieldChange{From: before.Name, To: a.Name}
		}
		if !sameJSON(a.Condition, before.Condition) {
			changes["condition"] = flywheel.FieldChange{From: before.Condition, To: a.Condition}
		}
		all, err := liveAudiences(tx, true)
		if err != nil {
			return err
		}
		all[key] = a.Condition
		if affected, _, err = audienceUsers(tx, key, all, flywheel.StatusRunning); err != nil {
			return err
		}
		if len(changes) == 0 {
			return nil
		}
		now := db.now()
		if err := tx.Model(&audienceRow{}).Where("key = ?", key).
			Updates(map[string]any{"name": a.Name, "condition": []byte(a.Condition), "updated_at": now}).Error; err != nil {
			return err
		}
		if err := addAudienceHistory(tx, key, actor, "update", changes, affected, now); err != nil {
			return err
		}
		// Each affected experiment's own log says that its targeting's
		// meaning changed, and how.
		if c, ok := changes["condition"]; ok {
			for _, e := range affected {
				ec := map[string]flywheel.FieldChange{"audiences." + key + ".condition": c}
				if err := addHistory(tx, e, actor, "audience_update", ec, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, translate("update audience", err)
	}
	a, err := db.FindAudienceByKey(ctx, key)
	if err != nil {
		return nil, err
	}
	if affected == nil {
		affected = []string{}
	}
	return &flywheel.AudienceChange{Audience: *a, AffectedExperiments: affected}, nil
}

// ArchiveAudience archives an audience that no experiment (other than
// archived ones) and no audience that is not archived uses.
func (db *DB) ArchiveAudience(ctx context.Context, key, actor string) (*flywheel.Audience, error) {
	err := db.tx(ctx, func(tx *gorm.DB) error {
		if _, err := lockLiveAudience(tx, key, "is already archived", false); err != nil {
			return err
		}
		live, err := liveAudiences(tx, false)
		if err != nil {
			return err
		}
		exps, auds, err := audienceUsers(tx, key, live, flywheel.StatusDraft, flywheel.StatusRunning, flywheel.StatusStopped)
		if err != nil {
			return err
		}
		if len(exps) > 0 || len(auds) > 0 {
			var users []string
			if len(exps) > 0 {
				users = append(users, "experiments "+quoteAll(exps))
			}
			if len(auds) > 0 {
				users = append(users, "audiences "+quoteAll(auds))
			}
			return flywheel.Errorf(flywheel.CodeConflict, "audience %q is in use by %s: remove the references (or archive the experiments) first",
				key, strings.Join(users, " and "))
		}
		now := db.now()
		if err := tx.Model(&audienceRow{}).Where("key = ?", key).Updates(map[string]any{"archived_at": now, "updated_at": now}).Error; err != nil {
			return err
		}
		changes := map[string]flywheel.FieldChange{"archived_at": {From: nil, To: now}}
		return addAudienceHistory(tx, key, actor, "archive", changes, nil, now)
	})
	if err != nil {
		return nil, translate("archive audience", err)
	}
	return db.FindAudienceByKey(ctx, key)
}

func quoteAll(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = fmt.Sprintf("%q", k)
	}
	return strings.Join(q, ", ")
}

func addAudienceHistory(tx *gorm.DB, key, actor, action string, changes map[string]flywheel.FieldChange, affected []string, at time.Time) error {
	raw, err := json.Marshal(changes)
	if err != nil {
		return err
	}
	if affected == nil {
		affected = []string{}
	}
	aff, err := json.Marshal(affected)
	if err != nil {
		return err
	}
	return tx.Create(&audienceHistoryRow{AudienceKey: key, At: at, Actor: actor, Action: action, Changes: raw, AffectedExperiments: aff}).Error
}

// AudienceHistory returns the audit log of one audience, oldest first.
func (db *DB) AudienceHistory(ctx context.Context, key string, limit int, cursor string) (flywheel.Page[flywheel.HistoryEntry], error) {
	if _, err := db.FindAudienceByKey(ctx, key); err != nil {
		return flywheel.Page[flywheel.HistoryEntry]{}, err
	}
	return historyPage[audienceHistoryRow](ctx, db.gorm, "audience_key", key, limit, cursor)
}

func (r audienceHistoryRow) entry() (flywheel.HistoryEntry, error) {
	h := flywheel.HistoryEntry{ID: r.ID, At: r.At.UTC(), Actor: r.Actor, Action: r.Action}
	if err := json.Unmarshal(r.Changes, &h.Changes); err != nil {
		return h, fmt.Errorf("store: audience history %d: %w", r.ID, err)
	}
	if err := json.Unmarshal(r.AffectedExperiments, &h.AffectedExperiments); err != nil {
		return h, fmt.Errorf("store: audience history %d: %w", r.ID, err)
	}
	return h, nil
}

// LiveAudiences returns the condition of every audience that is not
// archived, by key.
func (db *DB) LiveAudiences(ctx context.Context) (assign.Audiences, error) {
	out, err := liveAudiences(db.gorm.WithContext(ctx), false)
	if err != nil {
		return nil, translate("live audiences", err)
	}
	return out, nil
}

// AllAudiences returns the condition of every audience, archived ones
// included, by key: what the compiled configuration resolves references
// with (a reference is only ever made to a live audience, and an audience
// in use cannot be archived, so an archived one is resolved only if the
// two raced).
func (db *DB) AllAudiences(ctx context.Context) (assign.Audiences, error) {
	out, err := liveAudiences(db.gorm.WithContext(ctx), true)
	if err != nil {
		return nil, translate("all audiences", err)
	}
	return out, nil
}

// checkAudienceRefs refuses a targeting that references an audience that
// is unknown or archived, as committed now (called after bumpRevision,
// which orders it with archives).
func checkAudienceRefs(tx *gorm.DB, targeting json.RawMessage) error {
	if len(targeting) == 0 || !bytes.Contains(targeting, []byte(assign.AudienceOperator)) {
		return nil
	}
	live, err := liveAudiences(tx, false)
	if err != nil {
		return err
	}
	for _, k := range assign.ConditionAudiences(targeting, live) {
		if _, ok := live[k]; !ok {
			return flywheel.Invalid("targeting", "targeting references audience %q, which is unknown or archived", k)
		}
	}
	return nil
}
