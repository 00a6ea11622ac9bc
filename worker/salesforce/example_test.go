package salesforce_test

import (
	"context"
	"fmt"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// Log in with the password flow, write through sObject Collections and stream
// a query back. Against a real org only the Config changes.
func Example() {
	ctx := context.Background()
	org, err := sim.Start(ctx, "127.0.0.1:0", sim.Config{})
	if err != nil {
		panic(err)
	}
	defer org.Close()

	c, err := salesforce.New(ctx, salesforce.Config{
		LoginURL:     org.URL(),
		ClientID:     sim.DefaultClientID,
		ClientSecret: sim.DefaultClientSecret,
		Username:     sim.DefaultUsername,
		Password:     sim.DefaultPassword,
	})
	if err != nil {
		panic(err)
	}

	results, err := c.Create(ctx, []salesforce.Record{
		salesforce.NewRecord("Account", map[string]any{"Name": "Acme", "AnnualRevenue": 1250000.5}),
		salesforce.NewRecord("Account", map[string]any{"Industry": "Banking"}), // no Name
	})
	if err != nil {
		panic(err)
	}
	for _, r := range results {
		if err := r.Err(); err != nil {
			fmt.Println("rejected:", err)
		} else {
			fmt.Println("created an Account")
		}
	}

	err = c.Query(ctx, "SELECT Name, AnnualRevenue FROM Account", func(r salesforce.Record) error {
		fmt.Println(r.Fields["Name"], r.Fields["AnnualRevenue"])
		return nil
	})
	if err != nil {
		panic(err)
	}
	// Output:
	// created an Account
	// rejected: REQUIRED_FIELD_MISSING: Required fields are missing: [Name] (fields Name)
	// Acme 1250000.5
}
