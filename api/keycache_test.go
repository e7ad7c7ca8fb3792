package api

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/flywheel-oss/flywheel"
)

// fakeKeys is a KeyStore whose answer the test sets.
type fakeKeys struct {
	flywheel.KeyStore
	mu    sync.Mutex
	err   error
	calls int
}

func (f *fakeKeys) FindKeyBySecret(ctx context.Context, secret string) (*flywheel.APIKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return &flywheel.APIKey{Name: "app", Scope: flywheel.ScopeSDK}, nil
}

// TestKeyCacheThroughOutage: a key the database confirmed stays valid past
// its ttl while the database is unavailable (so /v1/assign keeps
// answering), never a key it did not confirm, and not one it then refuses.
func TestKeyCacheThroughOutage(t *testing.T) {
	ctx := context.Background()
	store := &fakeKeys{}
	kc := newKeyCache(store, 0) // every entry expired: each find asks the store
	if k, err := kc.find(ctx, "known"); err != nil || k.Name != "app" {
		t.Fatalf("find = %v, %v; want the key", k, err)
	}
	down := &flywheel.Error{Code: flywheel.CodeUnavailable, Message: "the database is unavailable; retry later"}
	store.err = down
	if k, err := kc.find(ctx, "known"); err != nil || k.Name != "app" {
		t.Errorf("find while the database is down = %v, %v; want the key it confirmed before", k, err)
	}
	if store.calls != 2 {
		t.Errorf("%d lookups, want 2: an expired entry is looked up again", store.calls)
	}
	if k, err := kc.find(ctx, "never-seen"); !errors.Is(err, down) {
		t.Errorf("find of an unconfirmed key while down = %v, %v; want the unavailable error", k, err)
	}
	store.err = &flywheel.Error{Code: flywheel.CodeNotFound, Message: "not found"}
	if _, err := kc.find(ctx, "known"); flywheel.ErrorCode(err) != flywheel.CodeNotFound {
		t.Errorf("find of a key the database no longer has = %v, want not_found", err)
	}
	store.err = down
	if _, err := kc.find(ctx, "known"); !errors.Is(err, down) {
		t.Errorf("find of a refused key while down = %v, want the unavailable error (the refusal forgot it)", err)
	}
}
