package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/pgforce/pgforce/sim"
)

// ExternalIDField is the Account external-id field the demo org adds through
// the simulator's schema; the Account mapping upserts by it.
const ExternalIDField = "External_Id__c"

// validationMessage is what the demo org's validation rule answers, so that
// the third thing to try shows a rejection a real org would give.
const validationMessage = "Annual revenue cannot be negative"

// Schema is the demo org's customisation: an external id on Account, and a
// validation rule that rejects a negative annual revenue.
func Schema() *sim.Schema {
	return &sim.Schema{Objects: []sim.ObjectDef{{
		Name: "Account",
		Fields: []sim.FieldDef{{
			Name: ExternalIDField, Label: "External Id", Type: "string", Length: 20,
			ExternalID: true, Unique: true,
		}},
		ValidationRules: []sim.Rule{{
			Name: "RevenueNotNegative", Field: "AnnualRevenue", Op: "<", Value: "0",
			Message: validationMessage,
		}},
	}}}
}

// externalID is the demo Account external id of record i (0-based).
func externalID(i int) string { return fmt.Sprintf("ACC-%05d", i+1) }

// Word lists for plausible, fictional company and person names. The
// generator is seeded, so every run builds the same org and the printed
// examples name records that exist.
var (
	companyFirst = []string{"Northwind", "Blue Harbor", "Summit", "Redwood", "Silver Lake", "Granite", "Evergreen",
		"Ironbridge", "Lakeside", "Brightwater", "Cedar", "Golden Gate", "Pioneer", "Riverbend", "Stonegate",
		"Oakridge", "Harborview", "Crestline", "Maple", "Westfield", "Clearview", "Highland", "Bluebird",
		"Copperfield", "Sunrise", "Falcon", "Meridian", "Atlas", "Beacon", "Keystone", "Horizon", "Prairie",
		"Coastal", "Juniper", "Alder", "Windmill", "Trident", "Polar", "Sequoia", "Vantage"}
	companySecond = []string{"Logistics", "Foods", "Analytics", "Health", "Energy", "Robotics", "Textiles",
		"Capital", "Media", "Software", "Pharma", "Freight", "Construction", "Telecom", "Hospitality",
		"Insurance", "Motors", "Labs", "Outfitters", "Consulting", "Solar", "Biotech", "Retail", "Networks",
		"Brewing", "Aerospace", "Materials", "Dynamics", "Systems", "Partners", "Instruments", "Marine",
		"Farms", "Studios", "Security", "Chemicals", "Learning", "Mobility", "Water", "Devices"}
	companySuffix = []string{"Inc.", "LLC", "Ltd.", "Group", "Corp.", "Co.", "GmbH", "S.A."}
	firstNames    = []string{"Olivia", "Liam", "Emma", "Noah", "Ava", "Oliver", "Sophia", "Elijah", "Isabella",
		"James", "Mia", "William", "Amelia", "Benjamin", "Harper", "Lucas", "Evelyn", "Henry", "Abigail",
		"Alexander", "Emily", "Daniel", "Ella", "Matthew", "Elizabeth", "Jackson", "Sofia", "Sebastian",
		"Avery", "David", "Scarlett", "Joseph", "Grace", "Samuel", "Chloe", "Carter", "Victoria", "Owen",
		"Riley", "Wyatt", "Aria", "John", "Lily", "Jack", "Aurora", "Luke", "Zoey", "Jayden", "Nora", "Priya",
		"Arjun", "Mei", "Hiroshi", "Fatima", "Omar", "Ingrid", "Lars", "Chiara", "Mateo", "Lucia"}
	lastNames = []string{"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
		"Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
		"Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark",
		"Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres",
		"Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell",
		"Mitchell", "Carter", "Roberts", "Patel", "Kim", "Chen", "Singh", "Müller", "Schmidt", "Rossi",
		"Dubois", "Silva", "Novak", "Johansson", "Okafor", "Tanaka", "Kowalski", "O'Brien", "Murphy"}
	titles = []string{"CEO", "CFO", "CTO", "VP Sales", "VP Marketing", "Head of Operations", "Procurement Manager",
		"IT Director", "Account Manager", "Sales Director", "Operations Analyst", "Purchasing Agent",
		"Engineering Manager", "Marketing Coordinator", "Office Manager", "Product Manager", "Controller"}
	departments = []string{"Executive", "Finance", "IT", "Sales", "Marketing", "Operations", "Procurement", "Engineering"}
	cities      = []struct{ city, state, country, phone string }{
		{"San Francisco", "CA", "USA", "+1 415"}, {"New York", "NY", "USA", "+1 212"}, {"Chicago", "IL", "USA", "+1 312"},
		{"Austin", "TX", "USA", "+1 512"}, {"Seattle", "WA", "USA", "+1 206"}, {"Boston", "MA", "USA", "+1 617"},
		{"Denver", "CO", "USA", "+1 303"}, {"Atlanta", "GA", "USA", "+1 404"}, {"Miami", "FL", "USA", "+1 305"},
		{"Portland", "OR", "USA", "+1 503"}, {"Minneapolis", "MN", "USA", "+1 612"}, {"Toronto", "ON", "Canada", "+1 416"},
		{"Vancouver", "BC", "Canada", "+1 604"}, {"London", "", "United Kingdom", "+44 20"}, {"Manchester", "", "United Kingdom", "+44 161"},
		{"Dublin", "", "Ireland", "+353 1"}, {"Berlin", "", "Germany", "+49 30"}, {"Munich", "", "Germany", "+49 89"},
		{"Paris", "", "France", "+33 1"}, {"Amsterdam", "", "Netherlands", "+31 20"}, {"Stockholm", "", "Sweden", "+46 8"},
		{"Madrid", "", "Spain", "+34 91"}, {"Milan", "", "Italy", "+39 02"}, {"Zurich", "", "Switzerland", "+41 44"},
		{"Sydney", "NSW", "Australia", "+61 2"}, {"Melbourne", "VIC", "Australia", "+61 3"}, {"Singapore", "", "Singapore", "+65"},
		{"Tokyo", "", "Japan", "+81 3"}, {"São Paulo", "SP", "Brazil", "+55 11"}, {"Mexico City", "CDMX", "Mexico", "+52 55"}}
	industries = []string{"Agriculture", "Apparel", "Banking", "Biotechnology", "Chemicals", "Communications",
		"Construction", "Consulting", "Education", "Electronics", "Energy", "Engineering", "Entertainment",
		"Finance", "Food & Beverage", "Healthcare", "Hospitality", "Insurance", "Machinery", "Manufacturing",
		"Media", "Retail", "Shipping", "Technology", "Telecommunications", "Transportation", "Utilities"}
	accountTypes = []string{"Prospect", "Customer - Direct", "Customer - Channel", "Channel Partner / Reseller", "Technology Partner"}
	leadSources  = []string{"Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"}
	products     = []string{"Platform", "Enterprise Licence", "Support Renewal", "Expansion", "Pilot", "Services",
		"Onboarding", "Analytics Add-on", "Upgrade", "Multi-year Deal"}
	stages = []struct {
		name        string
		probability int
	}{{"Prospecting", 10}, {"Qualification", 10}, {"Needs Analysis", 20}, {"Value Proposition", 50},
		{"Id. Decision Makers", 60}, {"Perception Analysis", 70}, {"Proposal/Price Quote", 75},
		{"Negotiation/Review", 90}, {"Closed Won", 100}, {"Closed Lost", 0}}
)

// Sizes is how many records of each object the demo org holds.
type Sizes struct {
	Accounts, Contacts, Opportunities int
}

// account is what the generator needs to know about an Account when it
// builds the records that point at it.
type account struct {
	name, domain string
	city         int
}

// Org is the seeded demo org.
type Org struct {
	// FirstAccountID is the Salesforce id of ACC-00001, the record the
	// printed examples edit.
	FirstAccountID   string
	FirstAccountName string
	// ThirdAccountID is ACC-00003, the Account the third try deletes.
	ThirdAccountID   string
	ThirdAccountName string
	// ExampleContactID/Name is a Contact of ACC-00001, which the third try
	// moves to the deleted Account.
	ExampleContactID   string
	ExampleContactName string
	Counts             map[string]int // the simulator's live record count per object, after seeding
}

// seed fills srv with the demo org. Contacts and Opportunities point at
// Accounts through AccountId, so the Account ids are read back first —
// through the REST API, as any client would.
func seed(ctx context.Context, srv *sim.Server, sizes Sizes, accountIDs func(context.Context) ([]string, error)) (*Org, error) {
	rng := rand.New(rand.NewPCG(42, 2024))
	accounts := make([]account, sizes.Accounts)
	// A permutation of every (first, second) pair keeps names unique up to
	// 1,600 × 8 suffixes = 12,800 accounts; beyond that they repeat, which
	// real orgs also tolerate.
	pairs := rng.Perm(len(companyFirst) * len(companySecond))
	for i := range accounts {
		p := pairs[i%len(pairs)]
		first, second := companyFirst[p/len(companySecond)], companySecond[p%len(companySecond)]
		suffix := companySuffix[(i/len(pairs)+p)%len(companySuffix)]
		slug := strings.ToLower(strings.ReplaceAll(first+second, " ", ""))
		if n := i / len(pairs); n > 0 {
			slug += fmt.Sprint(n + 1)
		}
		accounts[i] = account{name: first + " " + second + " " + suffix, domain: slug + ".example.com", city: rng.IntN(len(cities))}
	}
	fields := make([]map[string]any, len(accounts))
	for i, a := range accounts {
		c := cities[a.city]
		employees := 5 + rng.IntN(20000)
		revenue := int64(employees) * int64(80_000+rng.IntN(220_000)) / 1000 * 1000
		fields[i] = map[string]any{
			"Name": a.name, ExternalIDField: externalID(i),
			"Industry": industries[rng.IntN(len(industries))], "Type": accountTypes[rng.IntN(len(accountTypes))],
			"AnnualRevenue": json.Number(fmt.Sprint(revenue)), "NumberOfEmployees": employees,
			"Phone": fmt.Sprintf("%s 555 %04d", c.phone, rng.IntN(10000)), "Website": "https://www." + a.domain,
			"BillingCity": c.city, "BillingState": nilIfEmpty(c.state), "BillingCountry": c.country,
			"Rating": []string{"Hot", "Warm", "Cold"}[rng.IntN(3)], "AccountSource": leadSources[rng.IntN(len(leadSources))],
		}
	}
	if sizes.Accounts > 0 {
		if _, err := srv.Seed(ctx, "Account", sizes.Accounts, func(i int) map[string]any { return fields[i] }); err != nil {
			return nil, fmt.Errorf("seed Accounts: %w", err)
		}
	}
	ids, err := accountIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("read back Account ids: %w", err)
	}
	if len(ids) != sizes.Accounts {
		return nil, fmt.Errorf("read back %d Account ids, seeded %d", len(ids), sizes.Accounts)
	}
	org := &Org{Counts: map[string]int{}}
	if len(ids) == 0 && (sizes.Contacts > 0 || sizes.Opportunities > 0) {
		return nil, fmt.Errorf("contacts and opportunities need at least one account")
	}

	if sizes.Contacts > 0 {
		_, err = srv.Seed(ctx, "Contact", sizes.Contacts, func(i int) map[string]any {
			// Every Account gets contacts before any gets a second batch,
			// so the org looks evenly staffed.
			ai := i % len(ids)
			a := accounts[ai]
			c := cities[a.city]
			first, last := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
			local := strings.ToLower(strings.NewReplacer(" ", "", "'", "", "ü", "ue").Replace(first + "." + last))
			return map[string]any{
				"AccountId": ids[ai], "FirstName": first, "LastName": last,
				"Email": fmt.Sprintf("%s%d@%s", local, i/len(ids)+1, a.domain), "Title": titles[rng.IntN(len(titles))],
				"Department":  departments[rng.IntN(len(departments))],
				"Phone":       fmt.Sprintf("%s 555 %04d", c.phone, rng.IntN(10000)),
				"MailingCity": c.city, "MailingState": nilIfEmpty(c.state), "MailingCountry": c.country,
				"LeadSource": leadSources[rng.IntN(len(leadSources))],
			}
		})
		if err != nil {
			return nil, fmt.Errorf("seed Contacts: %w", err)
		}
	}
	if sizes.Opportunities > 0 {
		today := time.Now().UTC().Truncate(24 * time.Hour)
		_, err = srv.Seed(ctx, "Opportunity", sizes.Opportunities, func(i int) map[string]any {
			ai := rng.IntN(len(ids))
			st := stages[rng.IntN(len(stages))]
			amount := (5 + rng.IntN(496)) * 1000
			return map[string]any{
				"AccountId": ids[ai], "Name": accounts[ai].name + " – " + products[rng.IntN(len(products))],
				"StageName": st.name, "Probability": st.probability, "Amount": json.Number(fmt.Sprint(amount)),
				"CloseDate":  today.AddDate(0, 0, rng.IntN(360)-180).Format(time.DateOnly),
				"LeadSource": leadSources[rng.IntN(len(leadSources))],
			}
		})
		if err != nil {
			return nil, fmt.Errorf("seed Opportunities: %w", err)
		}
	}
	return org, nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
