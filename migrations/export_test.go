package migrations

import (
	"context"

	"github.com/pressly/goose/v3"
)

// UpByOne applies the next migration, for the tests that step through them.
func UpByOne(ctx context.Context, url string) error {
	return withProvider(url, func(p *goose.Provider) error {
		_, err := p.UpByOne(ctx)
		return err
	})
}

// DownByOne rolls back the newest applied migration.
func DownByOne(ctx context.Context, url string) error {
	return withProvider(url, func(p *goose.Provider) error {
		_, err := p.Down(ctx)
		return err
	})
}
