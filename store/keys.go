package store

import (
	"context"
	"strconv"
	"time"

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
