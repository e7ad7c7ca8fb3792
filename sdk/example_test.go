package sdk_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/flywheel-oss/flywheel/sdk"
)

// bootstrapConfig is a saved GET /v1/sdk/config body.
var bootstrapConfig = []byte(`{"revision": 7, "experiments": [
 {"key": "checkout-button", "unit_type": "customer", "traffic": 1, "running": true,
  "variants": [{"key": "control", "weight": 0.5},
               {"key": "green", "weight": 0.5, "payload": {"color":"#0a0"}}],
  "targeting": {"country": {"$in": ["FR", "BE"]}}},
 {"key": "onboarding", "unit_type": "device", "traffic": 1, "running": true,
  "variants": [{"key": "control", "weight": 0.5}, {"key": "short", "weight": 0.5}]}]}`)

// A client that starts from a bootstrap config assigns without a server.
// With no URL it runs offline: it fetches and sends nothing.
func Example() {
	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{}, sdk.WithBootstrap(bootstrapConfig))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close(ctx)

	u := sdk.Unit{CustomerID: "c-6", Attributes: map[string]any{"country": "FR"}}
	a := c.Assign(ctx, u, "checkout-button")
	fmt.Println(a.Variant, a.Enrolled, a.Reason, string(a.Payload))

	// The onboarding experiment randomises on devices: a unit without a
	// device id is not enrolled.
	a = c.Assign(ctx, u, "onboarding")
	fmt.Println(a.Enrolled, a.Reason)

	u.Attributes["country"] = "US"
	fmt.Println(c.Assign(ctx, u, "checkout-button").Reason)
	// Output:
	// green true bucket {"color":"#0a0"}
	// false no_unit_id
	// targeting
}

// New never fails because the server is unreachable: after the start-up
// timeout it returns a client that assigns from its bootstrap config while
// it keeps trying in the background.
func ExampleNew() {
	ctx := context.Background()
	c, err := sdk.New(ctx, sdk.Config{URL: os.Getenv("FLYWHEEL_URL"), Key: os.Getenv("FLYWHEEL_SDK_KEY")},
		sdk.WithBootstrap(bootstrapConfig),
		sdk.WithStartupTimeout(time.Second),
		sdk.WithPollInterval(time.Minute))
	if err != nil {
		fmt.Println("invalid options:", err)
		return
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx) // flushes queued events
	}()
	if !c.Ready() {
		fmt.Println("assigning from the bootstrap config for now")
	}
}

// An opted-out unit is never enrolled, and nothing about it is sent.
func ExampleWithConsent() {
	ctx := context.Background()
	optedOut := map[string]bool{"c-7": true}
	c, _ := sdk.New(ctx, sdk.Config{},
		sdk.WithBootstrap(bootstrapConfig),
		sdk.WithConsent(func(u sdk.Unit) bool { return !optedOut[u.CustomerID] }))
	defer c.Close(ctx)

	attrs := map[string]any{"country": "BE"}
	fmt.Println(c.Assign(ctx, sdk.Unit{CustomerID: "c-7", Attributes: attrs}, "checkout-button").Reason)
	fmt.Println(c.Assign(ctx, sdk.Unit{CustomerID: "c-8", Attributes: attrs, OptedOut: true}, "checkout-button").Reason)
	// Output:
	// opted_out
	// opted_out
}

// Assign picks the id of the experiment's unit type from the unit; ids of
// other unit types go in IDs.
func ExampleClient_Assign() {
	ctx := context.Background()
	c, _ := sdk.New(ctx, sdk.Config{}, sdk.WithBootstrap(bootstrapConfig))
	defer c.Close(ctx)

	u := sdk.Unit{CustomerID: "c-42", DeviceID: "d-9", IDs: map[string]string{"company": "acme"}}
	for _, key := range []string{"onboarding", "unknown"} {
		a := c.Assign(ctx, u, key)
		fmt.Printf("%s: %q enrolled=%v reason=%s\n", key, a.Variant, a.Enrolled, a.Reason)
	}
	// Output:
	// onboarding: "control" enrolled=true reason=bucket
	// unknown: "" enrolled=false reason=not_running
}

// Track records a conversion with a value and properties; Identify links
// the device a customer used before signing in.
func ExampleClient_Track() {
	ctx := context.Background()
	c, _ := sdk.New(ctx, sdk.Config{}, sdk.WithBootstrap(bootstrapConfig))
	defer c.Close(ctx)

	u := sdk.Unit{CustomerID: "c-42"}
	if err := c.Track(ctx, u, "purchase", 59.90, map[string]any{"currency": "EUR"}); err != nil {
		fmt.Println(err)
	}
	if err := c.Identify(ctx, "d-9", "c-42"); err != nil {
		fmt.Println(err)
	}
	fmt.Println(c.Stats().Queued)
	// Output: 2
}
