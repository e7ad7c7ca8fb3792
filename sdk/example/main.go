// Command example is a small app that embeds the Flywheel SDK: it reads
// FLYWHEEL_URL and FLYWHEEL_SDK_KEY, assigns a few customers to an
// experiment (FLYWHEEL_EXPERIMENT, default "checkout-button"), tracks a
// purchase for some of them, and closes the client, which flushes the
// events. With FLYWHEEL_BOOTSTRAP naming a saved GET /v1/sdk/config body,
// it also works while the server is unreachable.
//
//	FLYWHEEL_URL=http://127.0.0.1:8080 FLYWHEEL_SDK_KEY=fw_sdk_... go run ./sdk/example
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flywheel-oss/flywheel/sdk"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	url, key := getenv("FLYWHEEL_URL"), getenv("FLYWHEEL_SDK_KEY")
	if url == "" || key == "" {
		return errors.New("set FLYWHEEL_URL and FLYWHEEL_SDK_KEY")
	}
	experiment := getenv("FLYWHEEL_EXPERIMENT")
	if experiment == "" {
		experiment = "checkout-button"
	}
	opts := []sdk.Option{
		sdk.WithLogger(slog.New(slog.NewJSONHandler(os.Stderr, nil))),
		sdk.WithStartupTimeout(3 * time.Second),
	}
	if path := getenv("FLYWHEEL_BOOTSTRAP"); path != "" {
		opts = append(opts, sdk.WithBootstrapFile(path))
	}
	client, err := sdk.New(ctx, sdk.Config{URL: url, Key: key}, opts...)
	if err != nil {
		return err
	}
	defer func() {
		// Close flushes the queued events; give it a deadline.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := client.Close(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "example: close:", err)
		}
		s := client.Stats()
		fmt.Fprintf(stdout, "events: %d recorded, %d sent, %d rejected, %d dropped\n", s.Queued, s.Sent, s.Rejected, s.Dropped)
	}()
	if !client.Ready() {
		fmt.Fprintln(stdout, "the server's config is not loaded yet; assigning from the bootstrap config, if any")
	}

	for i := range 10 {
		unit := sdk.Unit{
			CustomerID: fmt.Sprintf("example-customer-%d", i),
			Attributes: map[string]any{"country": []string{"FR", "BE", "US"}[i%3]},
		}
		a := client.Assign(ctx, unit, experiment)
		fmt.Fprintf(stdout, "%s: variant=%q enrolled=%v reason=%s payload=%s\n", unit.CustomerID, a.Variant, a.Enrolled, a.Reason, a.Payload)
		if i%2 == 0 {
			if err := client.Track(ctx, unit, "purchase", 59.90, map[string]any{"currency": "EUR"}); err != nil {
				return err
			}
		}
	}
	return nil
}
