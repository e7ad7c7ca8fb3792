package store

import (
	"context"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/flywheel-oss/flywheel"
)

type keyRow struct {
	ID        int64 `gorm:"primaryKey"`
	Name      string
	Scope     string
	KeyHash   []byte
	Prefix    string
	CreatedAt time.Time
	RevokedAt *time.Time
}

func (keyRow) TableName() string { return "api_keys" }

func (r *keyRow) toDomain() *flywheel.APIKey {
	return &flywheel.APIKey{ID: r.ID, Name: r.Name, Scope: flywheel.Scope(r.Scope), Prefix: r.Prefix, CreatedAt: r.CreatedAt.UTC()}
}

// CreateKey stores the hash of a new key secret.
func (db *DB) CreateKey(ctx context.Context, name string, scope flywheel.Scope, secret string) (*flywheel.APIKey, error) {
	row := &keyRow{Name: name, Scope: string(scope), KeyHash: flywheel.HashKey(secret), Prefix: flywheel.KeyPrefix(secret), CreatedAt: db.now()}
	if err := db.gorm.WithContext(ctx).Create(row).Error; err != nil {
		return nil, translate("create key", err)
	}
	return row.toDomain(), nil
}

// EnsureKey makes sure a key with this secret exists with this scope. It is
// idempotent and safe to run from several processes at once; an existing
// key with another scope is given this one.
func (db *DB) EnsureKey(ctx context.Context, name string, scope flywheel.Scope, secret string) error {
	err := db.gorm.WithContext(ctx).Exec(`INSERT INTO api_keys (name, scope, key_hash, prefix, created_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (key_hash) DO UPDATE SET scope = EXCLUDED.scope, revoked_at = NULL`,
		name, string(scope), flywheel.HashKey(secret), flywheel.KeyPrefix(secret), db.now()).Error
	return translate("ensure key", err)
}

// FindKeyBySecret returns the live key with this secret, or not_found.
func (db *DB) FindKeyBySecret(ctx context.Context, secret string) (*flywheel.APIKey, error) {
	var row keyRow
	err := db.gorm.WithContext(ctx).Take(&row, "key_hash = ? AND revoked_at IS NULL", flywheel.HashKey(secret)).Error
	if err != nil {
		if errIsNotFound(err) {
			return nil, flywheel.Errorf(flywheel.CodeNotFound, "unknown API key")
		}
		return nil, translate("find key", err)
	}
	return row.toDomain(), nil
}

func quote(s string) string { return strconv.Quote(s) }

// ListKeys returns every key that is not revoked, oldest first (never the
// secrets: only their prefixes).
func (db *DB) ListKeys(ctx context.Context) ([]flywheel.APIKey, error) {
	var rows []keyRow
	if err := db.gorm.WithContext(ctx).Where("revoked_at IS NULL").Order("id").Find(&rows).Error; err != nil {
		return nil, translate("list keys", err)
	}
	out := make([]flywheel.APIKey, len(rows))
	for i := range rows {
		out[i] = *rows[i].toDomain()
	}
	return out, nil
}

// RevokeKey revokes the live key whose displayed prefix is prefix. It is
// not_found when none matches and a conflict when several do (give a longer
// prefix: the whole key).
func (db *DB) RevokeKey(ctx context.Context, prefix string) (*flywheel.APIKey, error) {
	var out *flywheel.APIKey
	err := db.tx(ctx, func(tx *gorm.DB) error {
		var rows []keyRow
		q := tx.Where("revoked_at IS NULL")
		if len(prefix) > len(flywheel.KeyPrefix(prefix)) { // a whole secret
			q = q.Where("key_hash = ?", flywheel.HashKey(prefix))
		} else {
			q = q.Where("prefix = ?", prefix)
		}
		if err := q.Find(&rows).Error; err != nil {
			return err
		}
		switch len(rows) {
		case 0:
			return flywheel.Errorf(flywheel.CodeNotFound, "no live key with prefix %q", prefix)
		case 1:
		default:
			return flywheel.Errorf(flywheel.CodeConflict, "%d keys share the prefix %q; give the whole key", len(rows), prefix)
		}
		if err := tx.Model(&keyRow{}).Where("id = ?", rows[0].ID).Update("revoked_at", db.now()).Error; err != nil {
			return err
		}
		out = rows[0].toDomain()
		return nil
	})
	if err != nil {
		return nil, translate("revoke key", err)
	}
	return out, nil
}
