--
-- The extension installs into schema durable and its dispatchers serve this
-- database (durable.database in the test configuration).
--
CREATE EXTENSION durable;
SELECT extname, extversion, nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'durable';
SHOW durable.database;
SHOW durable.workers;
-- the dispatchers are running (they connect once the database exists)
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN (SELECT count(*) FROM pg_stat_activity
                    WHERE backend_type = 'durable dispatcher') = 2;
        PERFORM pg_sleep(0.1);
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
END;
$$;
SELECT count(*) AS dispatchers FROM pg_stat_activity
 WHERE backend_type = 'durable dispatcher';
-- every public object lives in schema durable
SELECT c.relname, c.relkind FROM pg_class c
 WHERE c.relnamespace = 'durable'::regnamespace AND c.relkind = 'v'
 ORDER BY 1;

-- Test helper (not part of durable): POSTs a JSON body to the test service's
-- control endpoints with the curl command line tool.
CREATE FUNCTION test_http_post(url text, body text) RETURNS SETOF text
LANGUAGE plpgsql SET client_min_messages = warning AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS http_out (line text);
    TRUNCATE http_out;
    EXECUTE format('COPY http_out FROM PROGRAM %L',
                   format('curl -sf --http2-prior-knowledge -X POST -H content-type:application/json --data %s %s',
                          '''' || replace(body, '''', '') || '''', url));
    RETURN QUERY SELECT line FROM http_out;
END;
$$;

-- Test helper: how many side effects logged by the test service match a
-- LIKE pattern.
\getenv effects_log DURABLE_TEST_EFFECTS
ALTER DATABASE contrib_regression SET test.effects_log TO :'effects_log';
CREATE FUNCTION test_effects(pattern text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*)
      FROM regexp_split_to_table(
             coalesce(pg_read_file(current_setting('test.effects_log'), 0, 100000000, true), ''),
             E'\n') AS l
     WHERE l LIKE pattern
$$;

-- Test helper: runs a statement that must fail and shows its SQLSTATE,
-- message, detail and hint, with invocation and deployment ids masked
-- (they are random).
CREATE FUNCTION test_error(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    det text;
    hnt text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    RETURN regexp_replace(regexp_replace(st || ': ' || msg
                          || CASE WHEN det <> '' THEN E'\nDETAIL: ' || det ELSE '' END
                          || CASE WHEN hnt <> '' THEN E'\nHINT: ' || hnt ELSE '' END,
                          'inv_1[0-9a-zA-Z]{33}', 'inv_ID', 'g'),
                          'dp_[0-9a-f]{32}', 'dp_ID', 'g');
END;
$$;
