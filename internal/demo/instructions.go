package demo

import (
	"fmt"
	"strings"

	"github.com/pgforce/pgforce/sim"
)

// instructions tells the user how to connect and what to try, with the
// demo's real addresses and record ids filled in.
func (d *run) instructions() string {
	u := d.simURL
	if d.cfg.PublicSimURL != "" {
		u = d.cfg.PublicSimURL
	}
	api := u + "/services/data/v" + sim.DefaultAPIVersion
	psql := fmt.Sprintf("psql %q", d.psqlConn)
	if d.cfg.PsqlCommand != "" {
		psql = d.cfg.PsqlCommand
	}
	tokenCmd := fmt.Sprintf(`TOKEN=$(curl -s %s/services/oauth2/token -d grant_type=password -d client_id=%s -d client_secret=%s -d username=%s -d password=%s | sed -E 's/.*"access_token":"([^"]+)".*/\1/')`,
		u, sim.DefaultClientID, sim.DefaultClientSecret, sim.DefaultUsername, sim.DefaultPassword)
	first, second := externalID(0), externalID(1)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("Connect with psql (in another terminal):")
	w("  %s", psql)
	w("  SELECT * FROM pgforce.status;")
	w("")
	w("Talk to the simulated org with curl; first get a token:")
	w("  %s", tokenCmd)
	w("")
	w("Three things to try; each syncs within a second:")
	w("")
	w("1. Postgres -> Salesforce: update a row in psql ...")
	w("     UPDATE salesforce.account SET phone = '+1 415 555 0199', rating = 'Hot' WHERE external_id__c = '%s';", first)
	w("   ... and read the record back from the simulator:")
	w("     curl -s -H \"Authorization: Bearer $TOKEN\" '%s/sobjects/Account/%s/%s?fields=Name,Phone,Rating'", api, ExternalIDField, first)
	w("")
	w("2. Salesforce -> Postgres: edit the record through the org's REST API ...")
	w("     curl -s -X PATCH -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{\"Industry\":\"Biotechnology\",\"NumberOfEmployees\":4242}' '%s/sobjects/Account/%s'", api, d.org.FirstAccountID)
	w("   ... and look in psql:")
	w("     SELECT name, industry, numberofemployees, _hc_lastop FROM salesforce.account WHERE sfid = '%s';", d.org.FirstAccountID)
	w("")
	if o := d.org; o.ExampleContactID != "" && o.ThirdAccountID != "" {
		w("3. A write Salesforce rejects, retried from SQL once its cause is fixed in Salesforce.")
		w("   Someone deletes the Account %q in Salesforce (Postgres then shows isdeleted = true):", o.ThirdAccountName)
		w("     curl -s -X DELETE -H \"Authorization: Bearer $TOKEN\" '%s/sobjects/Account/%s'", api, o.ThirdAccountID)
		w("   In psql, move the Contact %s to that Account; Salesforce refuses it (ENTITY_IS_DELETED):", o.ExampleContactName)
		w("     UPDATE salesforce.contact SET accountid = '%s' WHERE sfid = '%s';", o.ThirdAccountID, o.ExampleContactID)
		w("     SELECT id, operation, error_code, message, fields FROM pgforce.error WHERE state = 'open';")
		w("     SELECT accountid, _hc_lastop, _hc_err FROM salesforce.contact WHERE sfid = '%s';", o.ExampleContactID)
		w("   Restore the Account from the Recycle Bin (the simulator's stand-in for the Salesforce UI), then retry:")
		w("     curl -s -X POST -H 'Content-Type: application/json' -d '{\"object\":\"Account\",\"ids\":[\"%s\"]}' '%s/__sim/undelete'", o.ThirdAccountID, u)
		w("     SELECT (pgforce.retry(id)).state FROM pgforce.error WHERE state = 'open';")
		w("     SELECT id, error_code, state, resolved_at FROM pgforce.error;")
		w("")
	}
	w("Also try the demo org's validation rule, %q:", validationMessage)
	w("     UPDATE salesforce.account SET annualrevenue = -1 WHERE external_id__c = '%s';", second)
	w("     SELECT annualrevenue, _hc_lastop, _hc_err FROM salesforce.account WHERE external_id__c = '%s';", second)
	w("   Fix the row (the fix is sent; _hc_lastop returns to SYNCED), then retry whatever is still open:")
	w("     UPDATE salesforce.account SET annualrevenue = 2500000 WHERE external_id__c = '%s';", second)
	w("     SELECT (pgforce.retry(id)).state FROM pgforce.error WHERE state = 'open';")
	w("")
	w("And drift: rows lost or set back behind the worker's back are found by a drift check and read again")
	w("(it leaves out, and counts as recent, records changed in the minute before it: wait a minute after the demo starts):")
	w("     BEGIN; SET LOCAL pgforce.origin = 'salesforce'; DELETE FROM salesforce.opportunity WHERE id <= 10; COMMIT;")
	w("     SELECT pgforce.check_drift('Opportunity');")
	w("     SELECT missing, stale, extra, recent, sample FROM pgforce.drift_check ORDER BY id DESC LIMIT 1;")
	w("     SELECT count(*) FROM salesforce.opportunity;")
	w("   A value changed behind its back, under the same SystemModstamp, takes a check that compares values:")
	w("     BEGIN; SET LOCAL pgforce.origin = 'salesforce'; UPDATE salesforce.opportunity SET amount = 0 WHERE id = 11; COMMIT;")
	w("     SELECT pgforce.check_drift('Opportunity', compare_values => true);")
	w("     SELECT different, sample FROM pgforce.drift_check ORDER BY id DESC LIMIT 1;")
	w("")
	w("Other ways in: the simulator at %s (user %s, password %s, client id %s, secret %s).",
		u, sim.DefaultUsername, sim.DefaultPassword, sim.DefaultClientID, sim.DefaultClientSecret)
	if d.worker != nil {
		w("The worker's health and Prometheus metrics: http://%s/healthz and /metrics; its log: %s.", d.cfg.HealthAddr, d.workerLog)
	}
	return b.String()
}
