// Conformance: the unmodified jsforce client (pinned in package-lock.json)
// against `pgforce sim`. Each test states one behaviour a real client relies on.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const jsforce = require('jsforce');
const { StreamingExtension } = require('jsforce/lib/api/streaming');
const { startSim, creds } = require('./sim');

const VERSION = '62.0';

async function login(url) {
  const conn = new jsforce.Connection({
    loginUrl: url,
    version: VERSION,
    oauth2: { loginUrl: url, clientId: creds.clientId, clientSecret: creds.clientSecret },
  });
  const info = await conn.login(creds.username, creds.password);
  return { conn, info };
}

// Waits for faye to finish its disconnect before the simulator stops:
// otherwise faye keeps retrying the in-flight requests against a server that
// is gone, and the process never exits.
async function closeClient(client, sub) {
  sub.cancel();
  await Promise.race([
    Promise.resolve(client.disconnect()).catch(() => {}),
    new Promise((resolve) => setTimeout(resolve, 2000)),
  ]);
}

async function collect(stream) {
  const rows = [];
  for await (const r of stream) rows.push(r);
  return rows;
}

test('jsforce against pgforce sim', async (t) => {
  const sim = await startSim();
  t.after(() => sim.stop());
  const { conn, info } = await login(sim.url);

  await t.test('password login through OAuth returns the org and user ids', () => {
    assert.match(info.organizationId, /^00D[0-9A-Za-z]{15}$/);
    assert.match(info.id, /^005[0-9A-Za-z]{15}$/);
    assert.equal(conn.instanceUrl, sim.url);
    assert.ok(conn.accessToken);
  });

  await t.test('describe lists Account fields with their types', async () => {
    const d = await conn.sobject('Account').describe();
    assert.equal(d.name, 'Account');
    const byName = Object.fromEntries(d.fields.map((f) => [f.name, f]));
    assert.equal(byName.Id.type, 'id');
    assert.equal(byName.Name.type, 'string');
    assert.equal(byName.AnnualRevenue.type, 'currency');
    assert.equal(byName.External_Id__c.externalId, true);
  });

  await t.test('create, retrieve, update and delete one record', async () => {
    const created = await conn.sobject('Account').create({ Name: 'Conformance Co', AnnualRevenue: 1234567.89 });
    assert.equal(created.success, true);
    assert.match(created.id, /^001[0-9A-Za-z]{15}$/);
    const rec = await conn.sobject('Account').retrieve(created.id);
    assert.equal(rec.Name, 'Conformance Co');
    assert.equal(rec.AnnualRevenue, 1234567.89);
    const updated = await conn.sobject('Account').update({ Id: created.id, Name: 'Conformance Inc' });
    assert.equal(updated.success, true);
    assert.equal((await conn.sobject('Account').retrieve(created.id)).Name, 'Conformance Inc');
    const deleted = await conn.sobject('Account').destroy(created.id);
    assert.equal(deleted.success, true);
    await assert.rejects(conn.sobject('Account').retrieve(created.id), (err) => err.errorCode === 'NOT_FOUND');
  });

  await t.test('a create that breaks a rule reports the Salesforce error code', async () => {
    await assert.rejects(conn.sobject('Account').create({ Industry: 'Banking' }),
      (err) => err.errorCode === 'REQUIRED_FIELD_MISSING');
  });

  await t.test('sObject Collections create 450 records in 200-record calls with per-record errors', async () => {
    const records = [];
    for (let i = 0; i < 450; i++) records.push({ Name: `Page ${String(i).padStart(3, '0')}` });
    records[17] = { Industry: 'Banking' }; // no Name: must fail alone
    const results = await conn.sobject('Account').create(records, { allOrNone: false, allowRecursive: true });
    assert.equal(results.length, 450);
    assert.equal(results.filter((r) => r.success).length, 449);
    assert.equal(results[17].success, false);
    assert.equal(results[17].errors[0].errorCode ?? results[17].errors[0].statusCode, 'REQUIRED_FIELD_MISSING');
  });

  await t.test('query pages through nextRecordsUrl with autoFetch', async () => {
    const res = await conn.query("SELECT Id, Name FROM Account WHERE Name LIKE 'Page %' ORDER BY Name", {
      autoFetch: true, maxFetch: 10000, headers: { 'Sforce-Query-Options': 'batchSize=200' },
    });
    assert.equal(res.totalSize, 449);
    assert.equal(res.records.length, 449);
    assert.equal(res.records[0].Name, 'Page 000');
    assert.equal(res.records[448].Name, 'Page 449');
  });

  await t.test('a query naming an unknown field fails with INVALID_FIELD', async () => {
    await assert.rejects(conn.query('SELECT Id, Bogus__c FROM Account'), (err) => err.errorCode === 'INVALID_FIELD');
  });

  await t.test('upsert by external id creates then updates', async () => {
    const first = await conn.sobject('Account').upsert({ External_Id__c: 'EXT-1', Name: 'Upserted' }, 'External_Id__c');
    assert.equal(first.success, true);
    assert.equal(first.created, true);
    const second = await conn.sobject('Account').upsert({ External_Id__c: 'EXT-1', Name: 'Upserted Again' }, 'External_Id__c');
    assert.equal(second.created, false);
    assert.equal(second.id, first.id);
    const many = await conn.sobject('Account').upsert([
      { External_Id__c: 'EXT-1', Name: 'Upserted Thrice' },
      { External_Id__c: 'EXT-2', Name: 'Upserted New' },
    ], 'External_Id__c');
    assert.deepEqual(many.map((r) => r.created), [false, true]);
  });

  await t.test('Bulk 2.0 ingest reports successful and failed records', async () => {
    const res = await conn.bulk2.loadAndWaitForResults({
      object: 'Account', operation: 'insert', pollInterval: 200, pollTimeout: 30000,
      // jsforce writes a null as #N/A, which clears the required Name.
      input: [{ Name: 'Bulk One' }, { Name: 'Bulk Two' }, { Name: null }],
    });
    assert.equal(res.successfulResults.length, 2);
    assert.equal(res.failedResults.length, 1);
    assert.match(res.failedResults[0].sf__Error, /^REQUIRED_FIELD_MISSING/);
    assert.match(res.successfulResults[0].sf__Id, /^001/);
  });

  await t.test('Bulk 2.0 query returns every matching record', async () => {
    const stream = await conn.bulk2.query("SELECT Id, Name FROM Account WHERE Name LIKE 'Bulk %'", { pollInterval: 200, pollTimeout: 30000 });
    const rows = await collect(stream);
    assert.deepEqual(rows.map((r) => r.Name).sort(), ['Bulk One', 'Bulk Two']);
  });

  await t.test('every answer carries the API usage that jsforce reads', () => {
    assert.ok(conn.limitInfo.apiUsage, 'no Sforce-Limit-Info seen');
    assert.ok(conn.limitInfo.apiUsage.used > 0);
    assert.ok(conn.limitInfo.apiUsage.limit >= conn.limitInfo.apiUsage.used);
  });

  await t.test('a streaming subscription with replay receives CREATE, UPDATE and DELETE events', async () => {
    const channel = '/data/AccountChangeEvent';
    const events = [];
    let wake;
    const client = conn.streaming.createClient([new StreamingExtension.Replay(channel, -1)]);
    const sub = client.subscribe(channel, (msg) => { events.push(msg); if (wake) wake(); });
    await sub; // resolves once the subscription is acknowledged
    const acc = await conn.sobject('Account').create({ Name: 'Streamed' });
    await conn.sobject('Account').update({ Id: acc.id, Name: 'Streamed Again' });
    await conn.sobject('Account').destroy(acc.id);
    const deadline = Date.now() + 10000;
    while (events.length < 3 && Date.now() < deadline) {
      await new Promise((resolve) => { wake = resolve; setTimeout(resolve, 500); });
    }
    await closeClient(client, sub);
    const types = events.map((e) => e.payload.ChangeEventHeader.changeType);
    assert.deepEqual(types, ['CREATE', 'UPDATE', 'DELETE']);
    assert.deepEqual(events[0].payload.ChangeEventHeader.recordIds, [acc.id]);
    assert.equal(events[1].payload.Name, 'Streamed Again');
    assert.ok(events[1].event.replayId > events[0].event.replayId);

    // Replaying from the first event's id delivers the two that followed it.
    const replayed = [];
    const client2 = conn.streaming.createClient([new StreamingExtension.Replay(channel, events[0].event.replayId)]);
    const sub2 = client2.subscribe(channel, (msg) => replayed.push(msg));
    await sub2;
    const until = Date.now() + 10000;
    while (replayed.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    await closeClient(client2, sub2);
    assert.deepEqual(replayed.map((e) => e.payload.ChangeEventHeader.changeType), ['UPDATE', 'DELETE']);
  });
});

test('jsforce refreshes an expired token and retries', async (t) => {
  const sim = await startSim(['--token-ttl', '1s']);
  t.after(() => sim.stop());
  // Salesforce's password flow returns no refresh token; jsforce refreshes
  // such a session by logging in again when a call answers 401.
  const { conn } = await login(sim.url);
  const firstToken = conn.accessToken;
  let refreshed = false;
  conn.on('refresh', () => { refreshed = true; });
  await new Promise((r) => setTimeout(r, 1500));
  const res = await conn.query('SELECT COUNT() FROM Account');
  assert.equal(res.totalSize, 0);
  assert.equal(refreshed, true);
  assert.notEqual(conn.accessToken, firstToken);
});

test('jsforce uses a refresh token to replace an expired session', async (t) => {
  const sim = await startSim(['--token-ttl', '1s']);
  t.after(() => sim.stop());
  assert.ok(sim.refreshToken, 'pgforce sim prints a refresh token for the configured user');
  // As an app that stored a refresh token would: no login, just a session
  // that is no longer valid and the token to renew it.
  const conn = new jsforce.Connection({
    instanceUrl: sim.url,
    accessToken: 'expired-session',
    refreshToken: sim.refreshToken,
    version: VERSION,
    oauth2: { loginUrl: sim.url, clientId: creds.clientId, clientSecret: creds.clientSecret },
  });
  let refreshed = false;
  conn.on('refresh', () => { refreshed = true; });
  const res = await conn.query('SELECT COUNT() FROM Account');
  assert.equal(res.totalSize, 0);
  assert.equal(refreshed, true);
  assert.notEqual(conn.accessToken, 'expired-session');
});

// Review: behaviours a client of a real org relies on, each against a fresh org.
test('jsforce against pgforce sim: SOQL and REST details', async (t) => {
  const sim = await startSim();
  t.after(() => sim.stop());
  const { conn } = await login(sim.url);

  await t.test('a parent-to-child subquery nests the children of each parent, or null without any', async () => {
    // SOQL "Using Relationship Queries": SELECT Name, (SELECT LastName FROM Contacts) FROM Account.
    const acme = await conn.sobject('Account').create({ Name: 'Sub Acme' });
    await conn.sobject('Account').create({ Name: 'Sub Empty' });
    await conn.sobject('Contact').create([
      { LastName: 'Smith', AccountId: acme.id },
      { LastName: 'Abe', AccountId: acme.id },
      { LastName: 'Jones', AccountId: acme.id },
    ]);
    const res = await conn.query(
      "SELECT Id, Name, (SELECT LastName FROM Contacts WHERE LastName != 'Jones' ORDER BY LastName) FROM Account WHERE Name LIKE 'Sub %' ORDER BY Name");
    assert.equal(res.totalSize, 2);
    const [withKids, without] = res.records;
    assert.equal(withKids.Contacts.totalSize, 2);
    assert.equal(withKids.Contacts.done, true);
    assert.deepEqual(withKids.Contacts.records.map((r) => r.LastName), ['Abe', 'Smith']);
    assert.equal(withKids.Contacts.records[0].attributes.type, 'Contact');
    assert.equal(without.Contacts, null);
  });

  await t.test("Account's self-lookup children are the ChildAccounts relationship", async () => {
    // Account object reference: ParentId's child relationship is ChildAccounts.
    const d = await conn.sobject('Account').describe();
    const rel = d.childRelationships.find((r) => r.childSObject === 'Account' && r.field === 'ParentId');
    assert.equal(rel.relationshipName, 'ChildAccounts');
    const parent = await conn.sobject('Account').create({ Name: 'Tree Parent' });
    await conn.sobject('Account').create({ Name: 'Tree Child', ParentId: parent.id });
    const res = await conn.query(`SELECT Name, (SELECT Name FROM ChildAccounts) FROM Account WHERE Id = '${parent.id}'`);
    assert.deepEqual(res.records[0].ChildAccounts.records.map((r) => r.Name), ['Tree Child']);
  });

  await t.test('a create whose body names the Id fails with INVALID_FIELD', async () => {
    // REST "Create a Record": [{"message":"The Id field should not be specified in the sobject data.","errorCode":"INVALID_FIELD"}]
    const acc = await conn.sobject('Account').create({ Name: 'Has Id' });
    await assert.rejects(conn.requestPost(`/services/data/v${VERSION}/sobjects/Account`, { id: acc.id, Name: 'Dup' }),
      (err) => err.errorCode === 'INVALID_FIELD' && err.message === 'The Id field should not be specified in the sobject data.');
  });

  await t.test('quarter and fiscal date literals filter by the current quarter and year', async () => {
    // SOQL "Date Formats and Date Literals": THIS_QUARTER, NEXT_QUARTER, THIS_FISCAL_YEAR, LAST_N_QUARTERS:n, ...
    const now = new Date();
    const day = (d) => d.toISOString().slice(0, 10);
    const qStart = Date.UTC(now.getUTCFullYear(), Math.floor(now.getUTCMonth() / 3) * 3, 1);
    const nextQ = new Date(Date.UTC(now.getUTCFullYear(), Math.floor(now.getUTCMonth() / 3) * 3 + 3, 1));
    const opp = (name, close) => ({ Name: name, StageName: 'Prospecting', CloseDate: day(close) });
    await conn.sobject('Opportunity').create([
      opp('Q This', new Date(qStart)), opp('Q Next', nextQ), opp('Q Last', new Date(qStart - 86400000)),
    ]);
    const names = async (where) => (await conn.query(
      `SELECT Name FROM Opportunity WHERE Name LIKE 'Q %' AND ${where} ORDER BY Name`)).records.map((r) => r.Name);
    assert.deepEqual(await names('CloseDate = THIS_QUARTER'), ['Q This']);
    assert.deepEqual(await names('CloseDate = NEXT_QUARTER'), ['Q Next']);
    assert.deepEqual(await names('CloseDate = LAST_N_QUARTERS:1'), ['Q Last']);
    assert.deepEqual(await names('CloseDate = THIS_FISCAL_QUARTER'), ['Q This']);
    const thisYear = ['Q Last', 'Q Next', 'Q This'].filter((n) => {
      const d = { 'Q This': new Date(qStart), 'Q Next': nextQ, 'Q Last': new Date(qStart - 86400000) }[n];
      return d.getUTCFullYear() === now.getUTCFullYear();
    });
    assert.deepEqual(await names('CloseDate = THIS_FISCAL_YEAR'), thisYear);
  });

  await t.test('aggregate functions with GROUP BY answer AggregateResult records with aliases or exprN', async () => {
    // SOQL "Aggregate Functions", "GROUP BY", "Using Aliases": unaliased aggregates are expr0, expr1, ...
    const acme = await conn.sobject('Account').create({ Name: 'Agg Acme', Industry: 'Banking' });
    await conn.sobject('Account').create([{ Name: 'Agg Beta', Industry: 'Banking' }, { Name: 'Agg Gamma', Industry: 'Energy' }]);
    await conn.sobject('Opportunity').create([
      { Name: 'Agg O1', StageName: 'Prospecting', CloseDate: '2026-03-01', Amount: 100, AccountId: acme.id },
      { Name: 'Agg O2', StageName: 'Prospecting', CloseDate: '2026-02-01', Amount: 50, AccountId: acme.id },
      { Name: 'Agg O3', StageName: 'Closed Won', CloseDate: '2026-01-15', Amount: 25, AccountId: acme.id },
    ]);
    const count = await conn.query("SELECT COUNT(Id) FROM Account WHERE Name LIKE 'Agg %'");
    assert.equal(count.totalSize, 1);
    assert.equal(count.records[0].attributes.type, 'AggregateResult');
    assert.equal(count.records[0].expr0, 3);

    const byIndustry = await conn.query(
      "SELECT Industry, COUNT(Id) n FROM Account WHERE Name LIKE 'Agg %' GROUP BY Industry ORDER BY COUNT(Id) DESC");
    assert.deepEqual(byIndustry.records.map((r) => [r.Industry, r.n]), [['Banking', 2], ['Energy', 1]]);

    const byStage = await conn.query(
      "SELECT StageName, SUM(Amount), MIN(CloseDate), Account.Name FROM Opportunity WHERE Name LIKE 'Agg %' GROUP BY StageName, Account.Name ORDER BY StageName");
    assert.deepEqual(byStage.records.map((r) => [r.StageName, r.expr0, r.expr1, r.Name]),
      [['Closed Won', 25, '2026-01-15', 'Agg Acme'], ['Prospecting', 150, '2026-02-01', 'Agg Acme']]);

    await assert.rejects(conn.query('SELECT Name, COUNT(Id) FROM Account GROUP BY Industry'),
      (err) => err.errorCode === 'MALFORMED_QUERY' && /Field must be grouped or aggregated: Name/.test(err.message));
  });

  await t.test('a semi-join and an anti-join filter by the ids a subquery selects', async () => {
    // SOQL "Comparison Operators" / semi-joins: WHERE Id IN (SELECT AccountId FROM Contact ...), and NOT IN.
    const kids = await conn.sobject('Account').create({ Name: 'Semi Kids' });
    await conn.sobject('Account').create({ Name: 'Semi None' });
    await conn.sobject('Contact').create({ LastName: 'Semi Child', AccountId: kids.id });
    const semi = await conn.query(
      "SELECT Name FROM Account WHERE Name LIKE 'Semi %' AND Id IN (SELECT AccountId FROM Contact WHERE LastName = 'Semi Child')");
    assert.deepEqual(semi.records.map((r) => r.Name), ['Semi Kids']);
    const anti = await conn.query(
      "SELECT Name FROM Account WHERE Name LIKE 'Semi %' AND Id NOT IN (SELECT AccountId FROM Contact WHERE AccountId != null)");
    assert.deepEqual(anti.records.map((r) => r.Name), ['Semi None']);
  });

  await t.test('an OFFSET above 2,000 fails with NUMBER_OUTSIDE_VALID_RANGE', async () => {
    // SOQL "OFFSET": "Requesting an offset greater than 2,000 results in a NUMBER_OUTSIDE_VALID_RANGE error."
    await assert.rejects(conn.query('SELECT Id FROM Account ORDER BY Name LIMIT 10 OFFSET 2001'),
      (err) => err.errorCode === 'NUMBER_OUTSIDE_VALID_RANGE');
    const ok = await conn.query('SELECT Id FROM Account ORDER BY Name LIMIT 10 OFFSET 2000');
    assert.equal(ok.records.length, 0);
  });

  await t.test('HAVING filters the groups of an aggregate query', async () => {
    // SOQL "HAVING": SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry HAVING COUNT(Id) > 1
    await conn.sobject('Account').create([
      { Name: 'Hav 1', Industry: 'Chemicals' }, { Name: 'Hav 2', Industry: 'Chemicals' }, { Name: 'Hav 3', Industry: 'Media' },
    ]);
    const res = await conn.query(
      "SELECT Industry, COUNT(Id) FROM Account WHERE Name LIKE 'Hav %' GROUP BY Industry HAVING COUNT(Id) > 1");
    assert.deepEqual(res.records.map((r) => [r.Industry, r.expr0]), [['Chemicals', 2]]);
  });

  await t.test('a SOSL search answers searchRecords', async () => {
    // REST "Search for a String": GET /search/?q=FIND {Acme} answers {"searchRecords": [...]}.
    await conn.sobject('Account').create([{ Name: 'Sosl Zebracorp' }, { Name: 'Sosl Other' }]);
    const res = await conn.search("FIND {Zebracorp} IN NAME FIELDS RETURNING Account(Id, Name ORDER BY Name LIMIT 5)");
    assert.deepEqual(res.searchRecords.map((r) => [r.attributes.type, r.Name]), [['Account', 'Sosl Zebracorp']]);
    const wild = await conn.search('FIND {Zebra*}');
    assert.equal(wild.searchRecords.length, 1);
    assert.deepEqual(Object.keys(wild.searchRecords[0]), ['attributes', 'Id']);
  });

  await t.test('deleting a deleted record answers 404 ENTITY_IS_DELETED with an empty fields list', async () => {
    // Seen from a real org: [{"message":"entity is deleted","errorCode":"ENTITY_IS_DELETED","fields":[]}]
    const acc = await conn.sobject('Account').create({ Name: 'Twice Deleted' });
    await conn.sobject('Account').destroy(acc.id);
    await assert.rejects(conn.request({ method: 'DELETE', url: `/services/data/v${VERSION}/sobjects/Account/${acc.id}` }),
      (err) => err.errorCode === 'ENTITY_IS_DELETED' && Array.isArray(err.data.fields) && err.data.fields.length === 0);
  });

  await t.test('WITH SECURITY_ENFORCED, USING SCOPE and FOR VIEW are accepted', async () => {
    // SOQL SELECT syntax: [USING SCOPE filterScope] [WHERE ...] [WITH ...] ... [FOR VIEW | FOR REFERENCE]
    await conn.sobject('Account').create({ Name: 'Clause Co' });
    for (const soql of [
      "SELECT Id, Name FROM Account WHERE Name = 'Clause Co' WITH SECURITY_ENFORCED",
      "SELECT Id, Name FROM Account WHERE Name = 'Clause Co' WITH USER_MODE",
      "SELECT Id, Name FROM Account USING SCOPE Mine WHERE Name = 'Clause Co'",
      "SELECT Id, Name FROM Account WHERE Name = 'Clause Co' LIMIT 1 FOR VIEW",
    ]) {
      const res = await conn.query(soql);
      assert.deepEqual(res.records.map((r) => r.Name), ['Clause Co'], soql);
    }
  });
});
