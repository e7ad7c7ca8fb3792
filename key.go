package flywheel

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"time"
)

// Scope is what an API key may do.
type Scope string

// The key scopes: admin may do everything; sdk may only fetch the SDK
// config and opt-outs, assign and send events; viewer may only read
// experiments, metrics, results, timeseries and history, and ask the power
// calculator (what the web UI shows someone who must not change anything):
// never a unit's data, never a write.
const (
	ScopeAdmin  Scope = "admin"
	ScopeSDK    Scope = "sdk"
	ScopeViewer Scope = "viewer"
)

// Valid reports whether s is a known scope.
func (s Scope) Valid() bool { return s == ScopeAdmin || s == ScopeSDK || s == ScopeViewer }

// APIKey is a stored key. The secret itself is never stored: only its
// SHA-256 hash (keys are 32 random bytes, so a fast hash is safe).
type APIKey struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Scope     Scope     `json:"scope"`
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
}

// NewKeySecret returns a fresh random key: "fw_<scope>_" and 43 characters
// of URL-safe base64 (256 bits).
func NewKeySecret(scope Scope) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "fw_" + string(scope) + "_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashKey returns the stored form of a key secret.
func HashKey(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// KeyPrefix returns the displayable start of a secret.
func KeyPrefix(secret string) string {
	if len(secret) > 12 {
		return secret[:12]
	}
	return secret
}

// KeyStore keeps API keys.
type KeyStore interface {
	// CreateKey stores a new key with the given secret.
	CreateKey(ctx context.Context, name string, scope Scope, secret string) (*APIKey, error)
	// EnsureKey makes sure the secret exists with that scope (idempotent).
	EnsureKey(ctx context.Context, name string, scope Scope, secret string) error
	// FindKeyBySecret returns the key with that secret (not_found if none or revoked).
	FindKeyBySecret(ctx context.Context, secret string) (*APIKey, error)
}
