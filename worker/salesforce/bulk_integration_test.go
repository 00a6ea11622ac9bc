package salesforce_test

import (
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/internal/simtest"
)

var fastPoll = salesforce.Poll{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}

func TestBulkIngestInsertReportsSuccessfulAndFailedRows(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	ctx := t.Context()

	job, err := c.CreateIngestJob(ctx, salesforce.IngestJob{Object: "Account", Operation: "insert"})
	require.NoError(t, err)
	require.Equal(t, salesforce.JobOpen, job.State)

	err = c.UploadIngestData(ctx, job.ID, []string{"Name", "Ext_Id__c", "Score__c", "Note__c"}, func(w *salesforce.CSVWriter) error {
		for i := range 5 {
			score := any(i)
			if i == 3 {
				score = -1 // the validation rule rejects this row
			}
			if err := w.Write(fmt.Sprintf("Bulk %d", i), fmt.Sprintf("b-%d", i), score, "a, \"quoted\"\nnote"); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
	_, err = c.CloseIngestJob(ctx, job.ID)
	require.NoError(t, err)

	done, err := c.WaitIngestJob(ctx, job.ID, fastPoll)
	require.NoError(t, err)
	require.Equal(t, salesforce.JobComplete, done.State)
	require.EqualValues(t, 5, done.NumberRecordsProcessed)
	require.EqualValues(t, 1, done.NumberRecordsFailed)

	var ok []salesforce.Row
	require.NoError(t, c.IngestSuccessfulResults(ctx, job.ID, func(r salesforce.Row) error { ok = append(ok, r); return nil }))
	require.Len(t, ok, 4)
	require.Equal(t, []string{"sf__Id", "sf__Created", "Name", "Ext_Id__c", "Score__c", "Note__c"}, ok[0].Header.Names)
	for _, r := range ok {
		id, _ := r.Get("sf__Id")
		require.Len(t, id, 18)
		created, _ := r.Get("sf__Created")
		require.Equal(t, "true", created)
		note, _ := r.Get("Note__c")
		require.Equal(t, "a, \"quoted\"\nnote", note)
	}

	var failed []salesforce.Row
	require.NoError(t, c.IngestFailedResults(ctx, job.ID, func(r salesforce.Row) error { failed = append(failed, r); return nil }))
	require.Len(t, failed, 1)
	name, _ := failed[0].Get("Name")
	require.Equal(t, "Bulk 3", name)
	msg, _ := failed[0].Get("sf__Error")
	perr := salesforce.ParseBulkError(msg)
	require.Equal(t, "FIELD_CUSTOM_VALIDATION_EXCEPTION", perr.StatusCode)
	require.Contains(t, perr.Message, simtest.RuleMessage)

	var unprocessed int
	require.NoError(t, c.IngestUnprocessedRecords(ctx, job.ID, func(salesforce.Row) error { unprocessed++; return nil }))
	require.Zero(t, unprocessed)

	n, err := c.Count(ctx, "SELECT COUNT() FROM Account")
	require.NoError(t, err)
	require.Equal(t, 4, n)
}

func TestBulkIngestUpdateNullsWithNAAndLeavesEmptyFieldsUnchanged(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	ctx := t.Context()
	created, err := c.Create(ctx, []salesforce.Record{
		salesforce.NewRecord("Account", map[string]any{"Name": "Keep", "Note__c": "old note", "Score__c": 7}),
	})
	require.NoError(t, err)
	id := created[0].ID

	job, err := c.CreateIngestJob(ctx, salesforce.IngestJob{Object: "Account", Operation: "update"})
	require.NoError(t, err)
	require.NoError(t, c.UploadIngestData(ctx, job.ID, []string{"Id", "Note__c", "Score__c"}, func(w *salesforce.CSVWriter) error {
		return w.Write(id, nil, salesforce.Unchanged)
	}))
	_, err = c.CloseIngestJob(ctx, job.ID)
	require.NoError(t, err)
	_, err = c.WaitIngestJob(ctx, job.ID, fastPoll)
	require.NoError(t, err)

	got, err := c.Retrieve(ctx, "Account", []string{id}, []string{"Note__c", "Score__c"})
	require.NoError(t, err)
	require.Nil(t, got[0].Fields["Note__c"], "#N/A sets null")
	require.EqualValues(t, "7", fmt.Sprint(got[0].Fields["Score__c"]), "an empty field leaves the value")
}

func TestBulkIngestUpsertByExternalIDCreatesThenUpdates(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	ctx := t.Context()
	run := func(name string) []salesforce.Row {
		job, err := c.CreateIngestJob(ctx, salesforce.IngestJob{Object: "Account", Operation: "upsert", ExternalIDFieldName: "Ext_Id__c"})
		require.NoError(t, err)
		require.NoError(t, c.UploadIngestData(ctx, job.ID, []string{"Ext_Id__c", "Name"}, func(w *salesforce.CSVWriter) error {
			return w.Write("up-1", name)
		}))
		_, err = c.CloseIngestJob(ctx, job.ID)
		require.NoError(t, err)
		_, err = c.WaitIngestJob(ctx, job.ID, fastPoll)
		require.NoError(t, err)
		var rows []salesforce.Row
		require.NoError(t, c.IngestSuccessfulResults(ctx, job.ID, func(r salesforce.Row) error { rows = append(rows, r); return nil }))
		return rows
	}
	first := run("first")
	require.Len(t, first, 1)
	created, _ := first[0].Get("sf__Created")
	require.Equal(t, "true", created)
	second := run("second")
	require.Len(t, second, 1)
	created, _ = second[0].Get("sf__Created")
	require.Equal(t, "false", created)
	id1, _ := first[0].Get("sf__Id")
	id2, _ := second[0].Get("sf__Id")
	require.Equal(t, id1, id2)
}

func TestBulkQueryFollowsLocatorsAcrossSeveralPages(t *testing.T) {
	s := simtest.Start(t)
	seedAccounts(t, s, 2500)
	c := simtest.Client(t, s)
	ctx := t.Context()

	job, err := c.CreateQueryJob(ctx, salesforce.QueryJob{Query: "SELECT Id, Name, Ext_Id__c FROM Account"})
	require.NoError(t, err)
	done, err := c.WaitQueryJob(ctx, job.ID, fastPoll)
	require.NoError(t, err)
	require.Equal(t, salesforce.JobComplete, done.State)

	pages := 0
	seen := map[string]bool{}
	err = c.QueryJobResultPages(ctx, job.ID, 1000, func(page io.Reader) error {
		pages++
		return salesforce.ReadCSV(page, func(r salesforce.Row) error {
			require.Equal(t, []string{"Id", "Name", "Ext_Id__c"}, r.Header.Names, "every page starts with its header")
			id, _ := r.Get("Id")
			seen[id] = true
			return nil
		})
	})
	require.NoError(t, err)
	require.Equal(t, 3, pages, "2500 rows at 1000 per page")
	require.Len(t, seen, 2500)
}

func TestBulkQueryAllIncludesDeletedRowsAndEmptyFieldsReadEmpty(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	ctx := t.Context()
	created, err := c.Create(ctx, []salesforce.Record{
		salesforce.NewRecord("Account", map[string]any{"Name": "Live"}),
		salesforce.NewRecord("Account", map[string]any{"Name": "Deleted"}),
	})
	require.NoError(t, err)
	_, err = c.Delete(ctx, []string{created[1].ID})
	require.NoError(t, err)

	rows := map[string]map[string]string{}
	collect := func(r salesforce.Row) error {
		m := map[string]string{}
		for i, n := range r.Header.Names {
			m[n] = r.Values[i]
		}
		rows[m["Name"]] = m
		return nil
	}
	_, err = c.BulkQuery(ctx, salesforce.QueryJob{Query: "SELECT Id, Name, Note__c, IsDeleted FROM Account", Operation: "queryAll"},
		salesforce.BulkQueryOptions{Poll: fastPoll}, collect)
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Equal(t, "true", rows["Deleted"]["IsDeleted"])
	require.Equal(t, "false", rows["Live"]["IsDeleted"])
	require.Equal(t, "", rows["Live"]["Note__c"])

	rows = map[string]map[string]string{}
	_, err = c.BulkQuery(ctx, salesforce.QueryJob{Query: "SELECT Id, Name FROM Account"}, salesforce.BulkQueryOptions{Poll: fastPoll}, collect)
	require.NoError(t, err)
	require.Len(t, rows, 1)
}

func TestBulkQueryWithBadSOQLFailsTyped(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	ctx := t.Context()
	job, err := c.CreateQueryJob(ctx, salesforce.QueryJob{Query: "SELECT Nope__c FROM Account"})
	if err != nil {
		// Salesforce validates the query when the job is created.
		var ae *salesforce.APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, 400, ae.HTTPStatus)
		return
	}
	_, err = c.WaitQueryJob(ctx, job.ID, fastPoll)
	var jf *salesforce.JobFailedError
	require.ErrorAs(t, err, &jf)
}

func TestBulkUploadStreamsLargeCSVWithoutBuffering(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	ctx := t.Context()
	const n = 20000
	job, err := c.CreateIngestJob(ctx, salesforce.IngestJob{Object: "Account", Operation: "insert"})
	require.NoError(t, err)
	require.NoError(t, c.UploadIngestData(ctx, job.ID, []string{"Name", "Ext_Id__c"}, func(w *salesforce.CSVWriter) error {
		for i := range n {
			if err := w.Write("Stream "+strconv.Itoa(i), "s-"+strconv.Itoa(i)); err != nil {
				return err
			}
		}
		return nil
	}))
	_, err = c.CloseIngestJob(ctx, job.ID)
	require.NoError(t, err)
	done, err := c.WaitIngestJob(ctx, job.ID, fastPoll)
	require.NoError(t, err)
	require.EqualValues(t, n, done.NumberRecordsProcessed)
	require.Zero(t, done.NumberRecordsFailed)
}

func TestBulkIngestDeleteAndHardDelete(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	ctx := t.Context()
	created, err := c.Create(ctx, []salesforce.Record{
		salesforce.NewRecord("Account", map[string]any{"Name": "soft"}),
		salesforce.NewRecord("Account", map[string]any{"Name": "hard"}),
	})
	require.NoError(t, err)
	run := func(op, id string) {
		job, err := c.CreateIngestJob(ctx, salesforce.IngestJob{Object: "Account", Operation: op})
		require.NoError(t, err)
		require.NoError(t, c.UploadIngestData(ctx, job.ID, []string{"Id"}, func(w *salesforce.CSVWriter) error { return w.Write(id) }))
		_, err = c.CloseIngestJob(ctx, job.ID)
		require.NoError(t, err)
		done, err := c.WaitIngestJob(ctx, job.ID, fastPoll)
		require.NoError(t, err)
		require.Zero(t, done.NumberRecordsFailed)
		require.NoError(t, c.DeleteIngestJob(ctx, job.ID))
	}
	run("delete", created[0].ID)
	run("hardDelete", created[1].ID)

	var names []string
	require.NoError(t, c.QueryAll(ctx, "SELECT Name FROM Account", func(r salesforce.Record) error {
		names = append(names, r.Fields["Name"].(string))
		return nil
	}))
	require.Equal(t, []string{"soft"}, names, "a soft delete stays in the recycle bin, a hard delete does not")
}

func TestBulkJobAbortEndsWaitWithJobFailedError(t *testing.T) {
	s := simtest.Start(t)
	c := simtest.Client(t, s)
	ctx := t.Context()
	job, err := c.CreateIngestJob(ctx, salesforce.IngestJob{Object: "Account", Operation: "insert"})
	require.NoError(t, err)
	aborted, err := c.AbortIngestJob(ctx, job.ID)
	require.NoError(t, err)
	require.Equal(t, salesforce.JobAborted, aborted.State)
	_, err = c.WaitIngestJob(ctx, job.ID, fastPoll)
	var jf *salesforce.JobFailedError
	require.ErrorAs(t, err, &jf)
	require.Equal(t, salesforce.JobAborted, jf.Job.State)

	_, err = c.CreateIngestJob(ctx, salesforce.IngestJob{Object: "Account", Operation: "upsert"})
	require.ErrorContains(t, err, "ExternalIDFieldName")
}
