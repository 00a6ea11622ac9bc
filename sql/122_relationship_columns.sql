-- 122_relationship_columns: capture Heroku Connect's external-id
-- relationship columns.
--
-- A child table may carry <lookup>__r__<extid> columns (e.g.
-- account__r__ext_id__c on contact): the child is written with its parent's
-- external id and Salesforce (or the worker, when the parent row is mapped
-- here) resolves the lookup. They are not Salesforce fields, so they are not
-- in pgforce.mapping.fields; this adds them to the captured columns of
-- sql/060_capture.sql. A column added later is picked up by the outbound
-- worker, which re-installs the triggers when it finds one they do not
-- name (the insert that set it before is sent with it, read from the row);
-- a table whose owner is not the worker's role needs its owner to do it:
--   SELECT pgforce._install_triggers(<mapping id>);
-- The status trigger names the captured columns (UPDATE OF), so dropping one
-- takes CASCADE, and the triggers are re-installed the same way afterwards.
CREATE OR REPLACE FUNCTION pgforce._captured_columns(p_mapping_id integer) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(pg_catalog.array_agg(a.attname::text ORDER BY a.attnum), '{}')
    FROM pgforce.mapping m
    JOIN pg_catalog.pg_attribute a ON a.attrelid = pgforce._mapping_table(m.id)
    WHERE m.id = p_mapping_id AND a.attnum > 0 AND NOT a.attisdropped
      AND (a.attname::text IN (SELECT pg_catalog.lower(f) FROM pg_catalog.unnest(m.fields) f)
           OR a.attname::text LIKE '%\_\_r\_\_%')
      AND a.attname::text <> ALL (ARRAY['id', 'sfid', 'systemmodstamp', 'isdeleted', 'createddate', '_hc_lastop', '_hc_err'])
$$;
