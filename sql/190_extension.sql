-- 190_extension: what only makes sense inside an extension. Last, so that
-- every table it names exists.
--
-- When installed with CREATE EXTENSION, pg_dump skips the data of extension
-- tables unless they are marked as configuration; mark the ones holding the
-- user's configuration and unsent work. The default org row is created by
-- CREATE EXTENSION itself, so it is left out of the dump. Through
-- `pgforce install` these are ordinary tables and pg_dump keeps them anyway.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pgforce') THEN
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.org', 'WHERE name <> ''default''');
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.mapping', '');
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.mapping_id_seq', '');
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.outbox', '');
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.outbox_id_seq', '');
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.error', '');
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.error_id_seq', '');
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.drift_check', '');
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.drift_check_id_seq', '');
        -- Durable work in flight: loads, resyncs and records to read again.
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.gue_jobs', '');
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.inbound_reread', '');
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.outbound_bulk_job', '');
        PERFORM pg_catalog.pg_extension_config_dump('pgforce.outbound_echo_row', '');
    END IF;
END
$$;
