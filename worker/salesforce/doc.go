// Package salesforce is the worker's client for a Salesforce org: OAuth token
// handling (password, refresh token, client credentials, JWT bearer), the REST
// API (versions, limits, describe, query/queryAll, sObject Collections,
// composite, updated/deleted), and Bulk API 2.0 ingest and query. Change Data Capture over CometD lives in the streaming
// sub-package.
//
// The client follows the documented wire formats (see
// shared/reference/salesforce-api.md) and nothing else, so it behaves the same
// against a real org and against `pgforce sim`.
//
// Design choices that matter to callers:
//   - Numbers are decoded as json.Number so currency and high-precision
//     decimals reach Postgres exactly.
//   - Query, Bulk query and Bulk results are streamed through callbacks; at
//     most one page is held in memory.
//   - A 401 INVALID_SESSION_ID refreshes the token and replays the call once.
//   - Nothing is retried on other errors; IsTransient tells the caller which
//     errors are worth retrying with backoff.
package salesforce
