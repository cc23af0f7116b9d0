/* sql/durable--0.1.0.sql: schema, SQL API and internal functions of durable */

\echo Use "CREATE EXTENSION durable" to load this file. \quit

/*
 * ---------------------------------------------------------------------------
 * C entry points
 * ---------------------------------------------------------------------------
 */

CREATE FUNCTION durable.new_invocation_id(service text, key text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'durable_new_invocation_id'
LANGUAGE C VOLATILE PARALLEL SAFE;

CREATE FUNCTION durable.invocation_id_bytes(invocation_id text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'durable_invocation_id_bytes'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION durable.invocation_id_from_bytes(raw bytea)
RETURNS text
AS 'MODULE_PATHNAME', 'durable_invocation_id_from_bytes'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION durable.decode_entry(entry_type integer, raw bytea)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'durable_decode_entry'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION durable.entry_type_name(entry_type integer)
RETURNS text
AS 'MODULE_PATHNAME', 'durable_entry_type_name'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- 'control', 'command' or 'notification'.
CREATE FUNCTION durable.entry_kind(entry_type integer)
RETURNS text
AS 'MODULE_PATHNAME', 'durable_entry_kind'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The message type code of a name entry_type_name returns, e.g. 'Run'.
CREATE FUNCTION durable.entry_type(name text)
RETURNS integer
AS 'MODULE_PATHNAME', 'durable_entry_type'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Fetches GET {uri}/discover; headers are "name: value" lines.  Returns
-- {"manifest": ..., "http_version": ..., "server": ...}.
CREATE FUNCTION durable._discover(uri text, headers text[], http_version text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'durable_discover'
LANGUAGE C VOLATILE;

-- Encodes the Input command (journal entry 0) for an invocation.
CREATE FUNCTION durable._input_entry(input bytea, header_names text[],
                                     header_values text[])
RETURNS bytea
AS 'MODULE_PATHNAME', 'durable_input_entry'
LANGUAGE C IMMUTABLE;

-- Wakes the dispatchers when the current transaction commits.
CREATE FUNCTION durable._wake_at_commit()
RETURNS void
AS 'MODULE_PATHNAME', 'durable_wake_at_commit'
LANGUAGE C VOLATILE;

/*
 * ---------------------------------------------------------------------------
 * Tables.  These are the durable state of the runtime; the views further
 * down are the supported way to read them.  Each is registered with
 * pg_extension_config_dump, so that pg_dump carries its rows (a dump of
 * the database then keeps invocations, journals, state and timers, and a
 * restore resumes them).
 * ---------------------------------------------------------------------------
 */

CREATE TABLE durable.deployment (
    id                  text PRIMARY KEY,
    uri                 text NOT NULL UNIQUE,
    headers             jsonb NOT NULL DEFAULT '{}',
    http_version        text CHECK (http_version IN ('1.1', '2')),
    protocol_mode       text NOT NULL,
    min_protocol_version integer NOT NULL,
    max_protocol_version integer NOT NULL,
    protocol_version    integer NOT NULL,
    sdk_version         text,
    manifest            jsonb NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('durable.deployment', '');

CREATE TABLE durable.service (
    name                text PRIMARY KEY,
    deployment_id       text NOT NULL REFERENCES durable.deployment (id),
    ty                  text NOT NULL
                        CHECK (ty IN ('service', 'virtual_object', 'workflow')),
    revision            integer NOT NULL DEFAULT 1,
    options             jsonb NOT NULL DEFAULT '{}'
);
SELECT pg_catalog.pg_extension_config_dump('durable.service', '');

CREATE TABLE durable.handler (
    service_name        text NOT NULL REFERENCES durable.service (name)
                        ON DELETE CASCADE,
    name                text NOT NULL,
    ty                  text CHECK (ty IN ('exclusive', 'shared', 'workflow')),
    options             jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (service_name, name)
);
SELECT pg_catalog.pg_extension_config_dump('durable.handler', '');

CREATE TABLE durable.invocation (
    id                  text PRIMARY KEY,
    service_name        text NOT NULL,
    handler_name        text NOT NULL,
    service_key         text,
    service_ty          text NOT NULL,
    handler_ty          text,
    status              text NOT NULL
                        CHECK (status IN ('pending', 'scheduled', 'ready', 'running',
                                          'backing-off', 'suspended', 'paused',
                                          'completed')),
    idempotency_key     text,
    -- a workflow's run: its key, until the workflow's completion retention
    -- has passed (then NULL, and the key may run again)
    workflow_key        text,
    -- 'ingress' (SQL) or 'service' (a Call or OneWayCall of invoked_by_id)
    invoked_by          text NOT NULL DEFAULT 'ingress'
                        CHECK (invoked_by IN ('ingress', 'service')),
    invoked_by_id       text,
    -- the invocation started from SQL at the top of this call tree
    root_invocation_id  text,
    pinned_deployment_id text,
    protocol_version    integer,
    random_seed         bigint NOT NULL,
    journal_size        integer NOT NULL DEFAULT 0,
    -- when a dispatcher may next start an attempt (ready, scheduled, backing-off)
    run_at              timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    modified_at         timestamptz NOT NULL DEFAULT now(),
    scheduled_start_at  timestamptz,
    running_at          timestamptz,
    completed_at        timestamptz,
    -- failed attempts over the whole life of the invocation
    retry_count         integer NOT NULL DEFAULT 0,
    -- failed attempts since the journal last grew (sent in StartMessage)
    retry_count_since_last_stored_entry integer NOT NULL DEFAULT 0,
    last_stored_entry_at timestamptz NOT NULL DEFAULT now(),
    next_retry_at       timestamptz,
    last_failure        text,
    last_failure_error_code integer,
    -- what a suspended invocation waits for
    waiting_completions integer[],
    waiting_signals     integer[],
    waiting_named_signals text[],
    -- dispatcher slot that owns the running attempt
    claimed_by          integer,
    completion_result   text CHECK (completion_result IN ('success', 'failure')),
    completion_failure  text,
    completion_failure_code integer,
    -- the failure's metadata (TerminalError metadata), as a JSON object
    completion_failure_metadata jsonb,
    output              bytea
);
SELECT pg_catalog.pg_extension_config_dump('durable.invocation', '');

CREATE INDEX invocation_runnable_idx ON durable.invocation (run_at)
    WHERE status IN ('ready', 'scheduled', 'backing-off');
CREATE INDEX invocation_claimed_idx ON durable.invocation (claimed_by)
    WHERE status = 'running';
CREATE INDEX invocation_key_idx ON durable.invocation (service_name, service_key)
    WHERE service_key IS NOT NULL AND status <> 'completed';
CREATE UNIQUE INDEX invocation_idempotency_idx
    ON durable.invocation (service_name, coalesce(service_key, ''), handler_name,
                           idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- A workflow's run handler runs once per key (within its retention).
CREATE UNIQUE INDEX invocation_workflow_idx
    ON durable.invocation (service_name, workflow_key)
    WHERE workflow_key IS NOT NULL;

CREATE TABLE durable.journal_entry (
    invocation_id       text NOT NULL REFERENCES durable.invocation (id)
                        ON DELETE CASCADE,
    index               integer NOT NULL,
    entry_type          integer NOT NULL,
    name                text,
    -- commands: the completion id they wait for; notifications: the one they carry
    completion_id       integer,
    signal_id           integer,
    signal_name         text,
    -- Call and OneWayCall commands: the invocation they started
    invoked_id          text,
    invoked_target      text,
    raw                 bytea NOT NULL,
    appended_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (invocation_id, index)
);
SELECT pg_catalog.pg_extension_config_dump('durable.journal_entry', '');

/*
 * Who waits for an invocation to end: the caller of a Call (CallCompletion)
 * and invocations attached to it (AttachInvocationCompletion).  When it
 * completes, each waiter gets the result through the notification queue.
 */
CREATE TABLE durable.invocation_waiter (
    invocation_id       text NOT NULL,
    waiter_id           text NOT NULL,
    completion_id       integer NOT NULL,
    entry_type          integer NOT NULL,
    PRIMARY KEY (waiter_id, completion_id)
);
SELECT pg_catalog.pg_extension_config_dump('durable.invocation_waiter', '');
CREATE INDEX invocation_waiter_idx ON durable.invocation_waiter (invocation_id);

/*
 * Durable promises of workflows (ctx.promise): one row per promise that was
 * read or completed, keyed by workflow and key.  Completed at most once.
 */
CREATE TABLE durable.promise (
    service_name        text NOT NULL,
    service_key         text NOT NULL,
    name                text NOT NULL,
    completed           boolean NOT NULL DEFAULT false,
    value               bytea,
    failure_code        integer,
    failure_message     text,
    completed_at        timestamptz,
    PRIMARY KEY (service_name, service_key, name)
);
SELECT pg_catalog.pg_extension_config_dump('durable.promise', '');

-- Invocations suspended on a promise that is not completed yet.
CREATE TABLE durable.promise_waiter (
    service_name        text NOT NULL,
    service_key         text NOT NULL,
    name                text NOT NULL,
    waiter_id           text NOT NULL,
    completion_id       integer NOT NULL,
    PRIMARY KEY (waiter_id, completion_id)
);
SELECT pg_catalog.pg_extension_config_dump('durable.promise_waiter', '');
CREATE INDEX promise_waiter_idx ON durable.promise_waiter (service_name, service_key, name);

CREATE TABLE durable.state_entry (
    service_name        text NOT NULL,
    service_key         text NOT NULL,
    key                 text NOT NULL,
    value               bytea NOT NULL,
    PRIMARY KEY (service_name, service_key, key)
);
SELECT pg_catalog.pg_extension_config_dump('durable.state_entry', '');

/*
 * Virtual objects and workflows have a single writer per key: an exclusive
 * invocation (exclusive or workflow handler) that has not started yet waits
 * while another exclusive invocation of the same key holds the lock (has
 * started and is not completed: running, suspended, backing off or paused)
 * or was queued before it (queue order is send order).  A delayed
 * invocation joins the queue when it is due.  Shared handlers never wait.
 *
 * This is the one place the rule is written: the dispatchers' claim and
 * the invocations view (which shows such an invocation as "pending") both
 * read behind_lock from here.  Internal: only the extension's owner reads
 * it, the invocations view on its readers' behalf.
 */
CREATE VIEW durable._invocation_queue AS
SELECT i.id, i.status, i.run_at,
       -- the key whose state an exclusive invocation would own, if any
       CASE WHEN i.service_key IS NOT NULL AND i.handler_ty IN ('exclusive', 'workflow')
            THEN i.service_name || '/' || i.service_key END AS state_owner_key,
       (i.service_key IS NOT NULL AND i.running_at IS NULL
        AND i.handler_ty IN ('exclusive', 'workflow')
        AND EXISTS (SELECT 1 FROM durable.invocation o
                     WHERE o.service_name = i.service_name
                       AND o.service_key = i.service_key
                       AND o.status <> 'completed'
                       AND NOT (o.status = 'scheduled' AND o.run_at > now())
                       AND o.handler_ty IN ('exclusive', 'workflow')
                       AND o.id <> i.id
                       AND (o.running_at IS NOT NULL
                            OR (o.created_at, o.id) < (i.created_at, i.id))))
         AS behind_lock
  FROM durable.invocation i;

/*
 * ---------------------------------------------------------------------------
 * Views
 * ---------------------------------------------------------------------------
 */

/*
 * Bytes as jsonb when they are UTF-8 JSON, else NULL.  Public (the views
 * call it, and a function in a view runs with the reader's rights), and
 * written with qualified names only, so that a reader's search_path cannot
 * change what it calls.
 */
CREATE FUNCTION durable.bytes_to_jsonb(b bytea)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF b IS NULL OR pg_catalog.length(b) OPERATOR(pg_catalog.=) 0 THEN
        RETURN NULL;
    END IF;
    RETURN pg_catalog.convert_from(b, 'UTF8')::pg_catalog.jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;

CREATE VIEW durable.deployments AS
SELECT d.id, d.uri, d.protocol_mode, d.http_version,
       d.min_protocol_version, d.max_protocol_version, d.protocol_version,
       d.sdk_version,
       -- the names only: values may be credentials (bearer tokens)
       ARRAY(SELECT k FROM jsonb_object_keys(d.headers) k ORDER BY k) AS header_names,
       d.created_at, d.updated_at,
       (SELECT array_agg(s.name ORDER BY s.name) FROM durable.service s
         WHERE s.deployment_id = d.id) AS services
  FROM durable.deployment d;

CREATE VIEW durable.services AS
SELECT s.name, s.ty, s.deployment_id, s.revision, d.uri AS deployment_uri,
       s.options
  FROM durable.service s JOIN durable.deployment d ON d.id = s.deployment_id;

CREATE VIEW durable.handlers AS
SELECT h.service_name, h.name, h.ty, s.ty AS service_ty, s.deployment_id,
       h.options
  FROM durable.handler h JOIN durable.service s ON s.name = h.service_name;

CREATE VIEW durable.invocations AS
SELECT i.id,
       i.service_name || '/' ||
         CASE WHEN i.service_key IS NOT NULL THEN i.service_key || '/' ELSE '' END ||
         i.handler_name AS target,
       i.service_name AS target_service_name,
       i.service_key AS target_service_key,
       i.handler_name AS target_handler_name,
       i.service_ty AS target_service_ty,
       -- waiting for a virtual object's lock
       CASE WHEN i.status IN ('ready', 'scheduled', 'backing-off')
                 AND i.run_at <= now() AND q.behind_lock
            THEN 'pending' ELSE i.status END AS status,
       i.idempotency_key,
       i.invoked_by,
       i.invoked_by_id,
       i.invoked_by_id AS parent_invocation_id,
       coalesce(i.root_invocation_id, i.id) AS root_invocation_id,
       i.pinned_deployment_id,
       i.journal_size,
       i.created_at,
       i.modified_at,
       i.scheduled_start_at,
       i.running_at,
       i.completed_at,
       i.retry_count,
       i.next_retry_at,
       i.last_failure,
       i.last_failure_error_code,
       i.completion_result,
       i.completion_failure,
       i.completion_failure_code,
       i.completion_failure_metadata,
       durable.bytes_to_jsonb(i.output) AS output,
       i.output AS output_raw
  FROM durable.invocation i
  JOIN durable._invocation_queue q ON q.id = i.id;

CREATE VIEW durable.journal AS
SELECT j.invocation_id AS id,
       j.index,
       durable.entry_type_name(j.entry_type) AS entry_type,
       durable.entry_kind(j.entry_type) AS entry_kind,
       j.name,
       CASE
         WHEN durable.entry_kind(j.entry_type) = 'notification' THEN true
         WHEN j.completion_id IS NULL THEN true
         ELSE EXISTS (SELECT 1 FROM durable.journal_entry n
                       WHERE n.invocation_id = j.invocation_id
                         AND durable.entry_kind(n.entry_type) = 'notification'
                         AND n.completion_id = j.completion_id
                         AND durable.entry_type_name(n.entry_type) <> 'CallInvocationId')
       END AS completed,
       j.completion_id,
       j.invoked_id,
       j.invoked_target,
       j.appended_at,
       j.raw,
       durable.decode_entry(j.entry_type, j.raw) AS entry
  FROM durable.journal_entry j;

CREATE VIEW durable.state AS
SELECT service_name, service_key, key,
       CASE WHEN durable.bytes_to_jsonb(value) IS NOT NULL
            THEN convert_from(value, 'UTF8') END AS value_utf8,
       value
  FROM durable.state_entry;

-- Invocations queued behind a virtual object's or workflow's key lock, in
-- the order they will run (position 1 runs next); what the invocations
-- view shows as pending.
CREATE VIEW durable.inbox AS
SELECT i.service_name, i.service_key,
       row_number() OVER (PARTITION BY i.service_name, i.service_key
                          ORDER BY i.created_at, i.id) AS position,
       i.id, i.handler_name, i.created_at
  FROM durable.invocation i
  JOIN durable._invocation_queue q ON q.id = i.id
 WHERE i.status IN ('ready', 'scheduled', 'backing-off')
   AND i.run_at <= now() AND q.behind_lock;

/*
 * ---------------------------------------------------------------------------
 * Deployments
 * ---------------------------------------------------------------------------
 */

/*
 * Checks the numeric (and retry policy) options of one service or handler
 * entry of a manifest.  Durable turns them into integers, intervals and
 * timestamps later, when an invocation runs or fails; a value that does not
 * fit there must be refused now, with the registration, rather than break
 * every attempt of the handler.  Absent and JSON null options are fine (the
 * durable.* settings apply).  p_handler is NULL for a service entry.
 */
CREATE FUNCTION durable._check_manifest_options(p_base text, p_service text,
                                                p_handler text, p_entry jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- the largest integer a JSON number carries exactly (2^53 - 1); as
    -- milliseconds, still an interval and a timestamp from now
    max_ms      constant numeric := 9007199254740991;
    field       text;
    v           jsonb;
    n           numeric;
    ok          boolean;
    hint        text;
    shown       text;
BEGIN
    FOREACH field IN ARRAY ARRAY['retryPolicyMaxAttempts',
                                 'retryPolicyInitialInterval', 'retryPolicyMaxInterval',
                                 'inactivityTimeout', 'abortTimeout',
                                 'idempotencyRetention', 'journalRetention',
                                 'workflowCompletionRetention',
                                 'retryPolicyExponentiationFactor',
                                 'retryPolicyOnMaxAttempts'] LOOP
        v := p_entry -> field;
        CONTINUE WHEN v IS NULL OR jsonb_typeof(v) OPERATOR(pg_catalog.=) 'null';

        IF field OPERATOR(pg_catalog.=) 'retryPolicyOnMaxAttempts' THEN
            ok := jsonb_typeof(v) OPERATOR(pg_catalog.=) 'string'
                  AND (v #>> '{}') OPERATOR(pg_catalog.=) ANY (ARRAY['PAUSE', 'KILL']);
            hint := 'retryPolicyOnMaxAttempts must be "PAUSE" or "KILL".';
        ELSE
            ok := jsonb_typeof(v) OPERATOR(pg_catalog.=) 'number';
            IF ok THEN
                n := (v #>> '{}')::numeric;
            END IF;
            IF field OPERATOR(pg_catalog.=) 'retryPolicyMaxAttempts' THEN
                ok := ok AND n OPERATOR(pg_catalog.=) trunc(n)
                      AND n OPERATOR(pg_catalog.>=) 0
                      AND n OPERATOR(pg_catalog.<=) 2147483647;
                hint := 'retryPolicyMaxAttempts must be an integer from 0 to 2147483647 (0: no limit).';
            ELSIF field OPERATOR(pg_catalog.=) 'retryPolicyExponentiationFactor' THEN
                ok := ok AND n OPERATOR(pg_catalog.>=) 1 AND n OPERATOR(pg_catalog.<=) 100;
                hint := 'retryPolicyExponentiationFactor must be a number from 1 to 100.';
            ELSE
                ok := ok AND n OPERATOR(pg_catalog.=) trunc(n)
                      AND n OPERATOR(pg_catalog.>=) 0
                      AND n OPERATOR(pg_catalog.<=) max_ms;
                hint := format('%s is a duration in milliseconds: an integer from 0 to %s.',
                               field, max_ms);
            END IF;
        END IF;

        IF NOT ok THEN
            -- a number may have thousands of digits: show its start
            shown := CASE WHEN length(v::text) OPERATOR(pg_catalog.>) 40
                          THEN left(v::text, 40) OPERATOR(pg_catalog.||) '...'
                          ELSE v::text END;
            RAISE EXCEPTION 'deployment at "%" returned an invalid manifest', p_base
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = CASE WHEN p_handler IS NULL
                                    THEN format('Service "%s" has %s %s.', p_service, field, shown)
                                    ELSE format('Handler "%s" of service "%s" has %s %s.',
                                                p_handler, p_service, field, shown)
                               END,
                      HINT = hint;
        END IF;
    END LOOP;
END;
$$;

-- What re-registration compares: each service's type and its handlers' types.
CREATE FUNCTION durable._manifest_shape(manifest jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT coalesce(jsonb_object_agg(s ->> 'name',
               jsonb_build_object('ty', s -> 'ty',
                   'handlers', (SELECT coalesce(jsonb_object_agg(h ->> 'name',
                                                    coalesce(h -> 'ty', 'null'::jsonb)), '{}')
                                  FROM jsonb_array_elements(s -> 'handlers') h))), '{}')
      FROM jsonb_array_elements(manifest -> 'services') s
$$;

CREATE FUNCTION durable.register_deployment(uri text,
                                            headers jsonb DEFAULT '{}',
                                            http_version text DEFAULT NULL,
                                            force boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    base        text;
    discovered  jsonb;
    v_manifest  jsonb;
    svc         jsonb;
    hnd         jsonb;
    dep_id      text;
    old_dep     durable.deployment;
    svc_ty      text;
    hnd_ty      text;
    min_v       integer;
    max_v       integer;
    mode        text;
    old_shape   jsonb;
    new_shape   jsonb;
BEGIN
    IF uri IS NULL OR uri !~ '^https?://[^/]+' THEN
        RAISE EXCEPTION 'invalid deployment uri "%"', uri
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A deployment uri looks like http://127.0.0.1:9080 or https://host/path.';
    END IF;
    IF headers IS NULL OR jsonb_typeof(headers) <> 'object' THEN
        RAISE EXCEPTION 'deployment headers must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got %s.', coalesce(headers::text, 'NULL'));
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_each(headers) e
                WHERE jsonb_typeof(e.value) <> 'string'
                   OR e.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$'
                   OR (e.value #>> '{}') ~ '[\r\n]') THEN
        RAISE EXCEPTION 'invalid deployment headers %', headers
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Header names must be HTTP tokens and values strings without line breaks.';
    END IF;
    IF http_version IS NOT NULL AND http_version NOT IN ('1.1', '2') THEN
        RAISE EXCEPTION 'invalid http_version "%"', http_version
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''1.1'', ''2'' or NULL (HTTP/2, falling back to HTTP/1.1).';
    END IF;
    base := rtrim(uri, '/');

    discovered := durable._discover(base,
                                    ARRAY(SELECT e.key || ': ' || e.value
                                            FROM jsonb_each_text(headers) e),
                                    http_version);
    v_manifest := discovered -> 'manifest';

    IF jsonb_typeof(v_manifest) IS DISTINCT FROM 'object'
       OR jsonb_typeof(v_manifest -> 'services') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'deployment at "%" returned an invalid manifest', base
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The manifest has no "services" array.';
    END IF;
    min_v := coalesce((v_manifest ->> 'minProtocolVersion')::integer, 1);
    max_v := coalesce((v_manifest ->> 'maxProtocolVersion')::integer, min_v);
    IF max_v < 5 OR min_v > 6 THEN
        RAISE EXCEPTION 'deployment at "%" speaks service protocol versions % to %, durable speaks 5 to 6',
                        base, min_v, max_v
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Use a Restate SDK release that supports service protocol V5 or V6.';
    END IF;
    mode := coalesce(v_manifest ->> 'protocolMode', 'BIDI_STREAM');
    IF mode NOT IN ('BIDI_STREAM', 'REQUEST_RESPONSE') THEN
        RAISE EXCEPTION 'deployment at "%" has unsupported protocolMode "%"', base, mode
            USING ERRCODE = 'feature_not_supported';
    END IF;

    -- Validate every service and handler before touching any table.
    FOR svc IN SELECT * FROM jsonb_array_elements(v_manifest -> 'services') LOOP
        IF coalesce(svc ->> 'name', '') = '' OR jsonb_typeof(svc -> 'handlers') IS DISTINCT FROM 'array' THEN
            RAISE EXCEPTION 'deployment at "%" returned an invalid manifest', base
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Service entry %s has no name or no handlers array.', svc::text);
        END IF;
        IF coalesce(svc ->> 'ty', '') NOT IN ('SERVICE', 'VIRTUAL_OBJECT', 'WORKFLOW') THEN
            RAISE EXCEPTION 'deployment at "%" returned an invalid manifest', base
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Service "%s" has unknown type "%s".', svc ->> 'name', svc ->> 'ty');
        END IF;
        PERFORM durable._check_manifest_options(base, svc ->> 'name', NULL, svc);
        FOR hnd IN SELECT * FROM jsonb_array_elements(svc -> 'handlers') LOOP
            IF jsonb_typeof(hnd) IS DISTINCT FROM 'object' OR coalesce(hnd ->> 'name', '') = '' THEN
                RAISE EXCEPTION 'deployment at "%" returned an invalid manifest', base
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('Service "%s" has a handler entry without a name: %s.',
                                          svc ->> 'name', hnd::text);
            END IF;
            PERFORM durable._check_manifest_options(base, svc ->> 'name', hnd ->> 'name', hnd);
        END LOOP;
    END LOOP;

    new_shape := durable._manifest_shape(v_manifest);

    SELECT * INTO old_dep FROM durable.deployment d WHERE d.uri = base FOR UPDATE;
    IF FOUND THEN
        old_shape := durable._manifest_shape(old_dep.manifest);
        IF old_shape IS DISTINCT FROM new_shape AND NOT force THEN
            RAISE EXCEPTION 'deployment "%" at "%" is already registered with different services',
                            old_dep.id, base
                USING ERRCODE = 'duplicate_object',
                      DETAIL = format('Added services: %s. Removed services: %s. Changed services: %s.',
                          coalesce((SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(new_shape) k
                                     WHERE NOT old_shape ? k), 'none'),
                          coalesce((SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(old_shape) k
                                     WHERE NOT new_shape ? k), 'none'),
                          coalesce((SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(new_shape) k
                                     WHERE old_shape ? k AND old_shape -> k <> new_shape -> k), 'none')),
                      HINT = 'Pass force => true to replace the registered services.';
        END IF;
        dep_id := old_dep.id;
        UPDATE durable.deployment d
           SET headers = register_deployment.headers,
               http_version = discovered ->> 'http_version',
               protocol_mode = mode,
               min_protocol_version = min_v,
               max_protocol_version = max_v,
               protocol_version = least(max_v, 6),
               sdk_version = discovered ->> 'server',
               manifest = v_manifest,
               updated_at = now()
         WHERE d.id = dep_id;
        -- Services this deployment no longer offers disappear with force.
        DELETE FROM durable.service s
         WHERE s.deployment_id = dep_id
           AND s.name NOT IN (SELECT e ->> 'name' FROM jsonb_array_elements(v_manifest -> 'services') e);
    ELSE
        dep_id := 'dp_' || replace(gen_random_uuid()::text, '-', '');
        INSERT INTO durable.deployment (id, uri, headers, http_version, protocol_mode,
                                        min_protocol_version, max_protocol_version,
                                        protocol_version, sdk_version, manifest)
        VALUES (dep_id, base, register_deployment.headers, discovered ->> 'http_version', mode,
                min_v, max_v, least(max_v, 6), discovered ->> 'server', v_manifest);
    END IF;

    FOR svc IN SELECT * FROM jsonb_array_elements(v_manifest -> 'services') LOOP
        svc_ty := lower(svc ->> 'ty');
        INSERT INTO durable.service AS s (name, deployment_id, ty, options)
        VALUES (svc ->> 'name', dep_id, svc_ty, svc - 'handlers' - 'name' - 'ty')
        ON CONFLICT (name) DO UPDATE
           SET deployment_id = excluded.deployment_id,
               ty = excluded.ty,
               options = excluded.options,
               -- a new revision whenever what serves the service changed
               revision = s.revision +
                   CASE WHEN s.deployment_id <> excluded.deployment_id
                          OR old_shape IS DISTINCT FROM new_shape
                        THEN 1 ELSE 0 END;
        DELETE FROM durable.handler h
         WHERE h.service_name = svc ->> 'name'
           AND h.name NOT IN (SELECT e ->> 'name' FROM jsonb_array_elements(svc -> 'handlers') e);
        FOR hnd IN SELECT * FROM jsonb_array_elements(svc -> 'handlers') LOOP
            hnd_ty := CASE
                        WHEN svc_ty = 'service' THEN NULL
                        WHEN hnd ? 'ty' THEN lower(hnd ->> 'ty')
                        WHEN svc_ty = 'workflow' THEN 'shared'
                        ELSE 'exclusive'
                      END;
            INSERT INTO durable.handler AS h (service_name, name, ty, options)
            VALUES (svc ->> 'name', hnd ->> 'name', hnd_ty, hnd - 'name' - 'ty')
            ON CONFLICT (service_name, name) DO UPDATE
               SET ty = excluded.ty, options = excluded.options;
        END LOOP;
    END LOOP;

    RETURN dep_id;
END;
$$;

/*
 * ---------------------------------------------------------------------------
 * Invocations
 * ---------------------------------------------------------------------------
 */

-- The invocation a new one would repeat: the one with the same idempotency
-- key, or a workflow's run for the same key (it runs once per key).
CREATE FUNCTION durable._existing_invocation(p_service text, p_handler text, p_key text,
                                             p_idempotency_key text, p_handler_ty text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT i.id FROM durable.invocation i
          WHERE p_idempotency_key IS NOT NULL
            AND i.service_name = p_service
            AND coalesce(i.service_key, '') = coalesce(p_key, '')
            AND i.handler_name = p_handler AND i.idempotency_key = p_idempotency_key),
        (SELECT i.id FROM durable.invocation i
          WHERE p_handler_ty = 'workflow'
            AND i.service_name = p_service AND i.workflow_key = p_key))
$$;

-- Creates an invocation (and its Input journal entry) in the caller's
-- transaction.  Returns the id, or the existing id for a repeated
-- idempotency key.
CREATE FUNCTION durable._enqueue(p_service text, p_handler text, p_input bytea,
                                 p_key text, p_idempotency_key text,
                                 p_delay interval, p_headers jsonb DEFAULT '{}',
                                 p_invoked_by text DEFAULT 'ingress',
                                 p_invoked_by_id text DEFAULT NULL,
                                 p_root_id text DEFAULT NULL,
                                 p_start_at timestamptz DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    svc         durable.service;
    hnd         durable.handler;
    new_id      text;
    existing    text;
    start_at    timestamptz;
BEGIN
    IF p_service IS NULL OR p_handler IS NULL THEN
        RAISE EXCEPTION 'service and handler must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO svc FROM durable.service s WHERE s.name = p_service;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'service "%" not found', p_service
            USING ERRCODE = 'undefined_object',
                  HINT = 'Register the deployment that serves it with durable.register_deployment().';
    END IF;
    SELECT * INTO hnd FROM durable.handler h
     WHERE h.service_name = p_service AND h.name = p_handler;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'handler "%" not found in service "%"', p_handler, p_service
            USING ERRCODE = 'undefined_function',
                  DETAIL = format('Service "%s" has handlers: %s.', p_service,
                                  (SELECT string_agg(h.name, ', ' ORDER BY h.name)
                                     FROM durable.handler h WHERE h.service_name = p_service));
    END IF;
    IF svc.ty <> 'service' AND p_key IS NULL THEN
        RAISE EXCEPTION 'a key is required to invoke %/%', p_service, p_handler
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = format('"%s" is a %s; every invocation targets one key.',
                                  p_service, replace(svc.ty, '_', ' ')),
                  HINT = 'Pass key => ''...''.';
    END IF;
    IF svc.ty = 'service' AND p_key IS NOT NULL THEN
        RAISE EXCEPTION 'service "%" is not keyed', p_service
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Only virtual objects and workflows take a key.';
    END IF;
    IF p_idempotency_key = '' THEN
        RAISE EXCEPTION 'idempotency key must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_delay IS NOT NULL AND p_delay < interval '0' THEN
        RAISE EXCEPTION 'delay must not be negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF p_headers IS NOT NULL AND p_headers <> '{}'::jsonb AND jsonb_typeof(p_headers) <> 'object' THEN
        RAISE EXCEPTION 'headers must be a JSON object of strings'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got a JSON %s.', jsonb_typeof(p_headers)),
                  HINT = 'Pass headers => ''{"x-name": "value"}''.';
    END IF;
    IF p_headers IS NOT NULL AND p_headers <> '{}'::jsonb
       AND EXISTS (SELECT 1 FROM jsonb_each(p_headers) e
                    WHERE jsonb_typeof(e.value) <> 'string' OR e.key = '') THEN
        RAISE EXCEPTION 'headers must be a JSON object of strings'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Every header needs a non-empty name and a string value.';
    END IF;

    -- (not a call at all for the common case: a SQL function with a SET
    -- clause is planned at every call)
    IF p_idempotency_key IS NOT NULL OR hnd.ty = 'workflow' THEN
        existing := durable._existing_invocation(p_service, p_handler, p_key,
                                                 p_idempotency_key, hnd.ty);
        IF existing IS NOT NULL THEN
            RETURN existing;
        END IF;
    END IF;

    new_id := durable.new_invocation_id(p_service, CASE WHEN svc.ty = 'service' THEN NULL ELSE p_key END);
    start_at := CASE WHEN p_start_at IS NOT NULL AND p_start_at > clock_timestamp() THEN p_start_at
                     WHEN p_start_at IS NOT NULL THEN NULL
                     WHEN p_delay IS NULL OR p_delay = interval '0' THEN NULL
                     ELSE clock_timestamp() + p_delay END;

    INSERT INTO durable.invocation (id, service_name, handler_name, service_key,
                                    service_ty, handler_ty, status, idempotency_key,
                                    workflow_key,
                                    invoked_by, invoked_by_id, root_invocation_id,
                                    random_seed, journal_size,
                                    run_at, scheduled_start_at, created_at)
    VALUES (new_id, p_service, p_handler, p_key, svc.ty, hnd.ty,
            CASE WHEN start_at IS NULL THEN 'ready' ELSE 'scheduled' END,
            p_idempotency_key, CASE WHEN hnd.ty = 'workflow' THEN p_key END,
            p_invoked_by, p_invoked_by_id, p_root_id,
            (random() * 9.0e18)::bigint, 1,
            coalesce(start_at, now()), start_at,
            -- the statement's own time: invocations of one key queue in send order
            clock_timestamp())
    ON CONFLICT DO NOTHING;

    IF NOT FOUND THEN
        -- A concurrent transaction committed the same idempotency key, or
        -- the same workflow key, first.
        RETURN durable._existing_invocation(p_service, p_handler, p_key,
                                            p_idempotency_key, hnd.ty);
    END IF;

    INSERT INTO durable.journal_entry (invocation_id, index, entry_type, raw)
    VALUES (new_id, 0, durable.entry_type('Input'),
            durable._input_entry(p_input,
                                 ARRAY(SELECT e.key FROM jsonb_each_text(coalesce(p_headers, '{}')) e ORDER BY e.key),
                                 ARRAY(SELECT e.value FROM jsonb_each_text(coalesce(p_headers, '{}')) e ORDER BY e.key)));

    PERFORM durable._wake_at_commit();
    RETURN new_id;
END;
$$;

-- headers: a JSON object of strings, delivered to the handler with its
-- input (ctx.request().headers); a JSON input adds content-type unless the
-- headers name one.
CREATE FUNCTION durable.send(service text, handler text, input jsonb DEFAULT NULL,
                             key text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                             delay interval DEFAULT NULL, headers jsonb DEFAULT NULL)
RETURNS text
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._enqueue(service, handler,
                            CASE WHEN input IS NULL THEN NULL
                                 ELSE convert_to(input::text, 'UTF8') END,
                            key, idempotency_key, delay,
                            CASE WHEN input IS NULL OR jsonb_typeof(headers) <> 'object'
                                 THEN headers
                                 ELSE '{"content-type": "application/json"}'::jsonb
                                      || coalesce(headers, '{}') END)
$$;

CREATE FUNCTION durable.send(service text, handler text, input bytea,
                             key text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                             delay interval DEFAULT NULL, headers jsonb DEFAULT NULL)
RETURNS text
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._enqueue(service, handler, input, key, idempotency_key, delay, headers)
$$;

/*
 * send + await, with the invocation committed on its own.  SECURITY INVOKER:
 * what it does on the caller's behalf (a durable.send committed by the
 * submitter worker, then durable.await) is checked against the caller's
 * rights.
 */
CREATE FUNCTION durable.call(service text, handler text, input jsonb DEFAULT NULL,
                             key text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                             timeout interval DEFAULT '1 min', headers jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'durable_call'
LANGUAGE C VOLATILE SECURITY INVOKER;

CREATE FUNCTION durable.await(invocation_id text, timeout interval DEFAULT '1 min')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'durable_await'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION durable.output(invocation_id text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'durable_output'
LANGUAGE C VOLATILE SECURITY DEFINER STRICT
SET search_path = pg_catalog, pg_temp;

/*
 * ---------------------------------------------------------------------------
 * Runtime internals.  The invocation state machine itself is C
 * (src/lifecycle.c, see docs/architecture.md); what is here are the tables
 * and helpers its statements use.
 * ---------------------------------------------------------------------------
 */

-- A pending ctx.sleep; wake_at 'infinity' never fires.
CREATE TABLE durable.timer (
    invocation_id       text NOT NULL REFERENCES durable.invocation (id)
                        ON DELETE CASCADE,
    completion_id       integer NOT NULL,
    wake_at             timestamptz NOT NULL,
    PRIMARY KEY (invocation_id, completion_id)
);
SELECT pg_catalog.pg_extension_config_dump('durable.timer', '');
CREATE INDEX timer_wake_at_idx ON durable.timer (wake_at);

-- Pending ctx.sleep timers, with what they belong to.
CREATE VIEW durable.timers AS
SELECT t.invocation_id AS id,
       i.service_name || '/' ||
         CASE WHEN i.service_key IS NOT NULL THEN i.service_key || '/' ELSE '' END ||
         i.handler_name AS target,
       t.completion_id,
       t.wake_at,
       t.wake_at = 'infinity' AS never
  FROM durable.timer t
  JOIN durable.invocation i ON i.id = t.invocation_id;

/*
 * Notifications on their way to an invocation: awakeable completions and
 * named signals (from SQL, in the caller's transaction, or from handlers),
 * results of calls, attachments and promises (when what they wait for
 * ends), and kills.  A dispatcher delivers them through the notification
 * path once committed; no foreign key, since a handler may address an
 * invocation that does not exist (the notification is then dropped at
 * delivery).  An awakeable (a signal index) and a completion id are
 * completed once: a second one is refused or dropped.
 */
CREATE TABLE durable.notification_queue (
    id                  bigserial PRIMARY KEY,
    invocation_id       text,
    -- 'notify'; 'kill' (durable.kill: nothing to journal, the invocation
    -- ends); 'promise' (durable.resolve_promise: promise_name of workflow
    -- service_name, key service_key, is completed with raw's result, and
    -- whoever waits for it is notified)
    action              text NOT NULL DEFAULT 'notify'
                        CHECK (action IN ('notify', 'kill', 'promise')),
    service_name        text,
    service_key         text,
    promise_name        text,
    entry_type          integer,
    signal_index        integer,
    signal_name         text,
    completion_id       integer,
    raw                 bytea,
    queued_at           timestamptz NOT NULL DEFAULT now(),
    deliver_after       timestamptz NOT NULL DEFAULT now(),
    CHECK (CASE action
           WHEN 'kill' THEN invocation_id IS NOT NULL
           WHEN 'promise' THEN num_nonnulls(service_name, service_key, promise_name, raw) = 4
           ELSE invocation_id IS NOT NULL AND raw IS NOT NULL AND entry_type IS NOT NULL
                AND num_nonnulls(signal_index, signal_name, completion_id) = 1 END)
);
SELECT pg_catalog.pg_extension_config_dump('durable.notification_queue', '');
SELECT pg_catalog.pg_extension_config_dump('durable.notification_queue_id_seq', '');
CREATE UNIQUE INDEX notification_queue_awakeable_idx
    ON durable.notification_queue (invocation_id, signal_index)
    WHERE signal_index IS NOT NULL;
CREATE UNIQUE INDEX notification_queue_completion_idx
    ON durable.notification_queue (invocation_id, completion_id)
    WHERE completion_id IS NOT NULL;
-- A promise is completed once: one completion from SQL may wait here.
CREATE UNIQUE INDEX notification_queue_promise_idx
    ON durable.notification_queue (service_name, service_key, promise_name)
    WHERE action = 'promise';
CREATE INDEX notification_queue_deliver_idx ON durable.notification_queue (deliver_after);

CREATE FUNCTION durable._complete_awakeable(awakeable_id text, value bytea, failure text)
RETURNS void
AS 'MODULE_PATHNAME', 'durable_complete_awakeable'
LANGUAGE C VOLATILE;

CREATE FUNCTION durable._send_signal(invocation_id text, name text, value bytea, failure text)
RETURNS void
AS 'MODULE_PATHNAME', 'durable_send_signal'
LANGUAGE C VOLATILE;

CREATE FUNCTION durable._end_invocation(invocation_id text, kill boolean)
RETURNS boolean
AS 'MODULE_PATHNAME', 'durable_end_invocation'
LANGUAGE C VOLATILE;

/*
 * Cancel and kill, in the caller's transaction, usable in bulk:
 *   SELECT durable.cancel(id) FROM durable.invocations WHERE ...
 * Each returns false for an invocation that is completed already.
 */
CREATE FUNCTION durable.cancel(invocation_id text)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._end_invocation(invocation_id, false)
$$;

CREATE FUNCTION durable.kill(invocation_id text)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._end_invocation(invocation_id, true)
$$;

/*
 * Awakeables and signals from SQL, in the caller's transaction: rolled
 * back, nothing is delivered; committed, delivered exactly once.  They run
 * as the extension's owner, like durable.send: EXECUTE on them is the
 * permission to complete any awakeable or signal any invocation.
 */
CREATE FUNCTION durable.resolve_awakeable(awakeable_id text, value jsonb DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._complete_awakeable(awakeable_id,
               CASE WHEN value IS NOT NULL
                    THEN pg_catalog.convert_to(value::pg_catalog.text, 'UTF8') END,
               NULL)
$$;

CREATE FUNCTION durable.resolve_awakeable(awakeable_id text, value bytea)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._complete_awakeable(awakeable_id, value, NULL)
$$;

CREATE FUNCTION durable.reject_awakeable(awakeable_id text, reason text)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._complete_awakeable(awakeable_id, NULL, coalesce(reason, ''))
$$;

CREATE FUNCTION durable.signal(invocation_id text, name text, value jsonb DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._send_signal(invocation_id, name,
               CASE WHEN value IS NOT NULL
                    THEN pg_catalog.convert_to(value::pg_catalog.text, 'UTF8') END,
               NULL)
$$;

CREATE FUNCTION durable.signal(invocation_id text, name text, value bytea)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._send_signal(invocation_id, name, value, NULL)
$$;

CREATE FUNCTION durable.reject_signal(invocation_id text, name text, reason text)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._send_signal(invocation_id, name, NULL, coalesce(reason, ''))
$$;

/*
 * ---------------------------------------------------------------------------
 * Workflows and their promises
 * ---------------------------------------------------------------------------
 */

CREATE FUNCTION durable._complete_promise(workflow text, key text, name text,
                                          value bytea, failure text)
RETURNS void
AS 'MODULE_PATHNAME', 'durable_complete_promise'
LANGUAGE C VOLATILE;

/*
 * Completing a workflow's promise from SQL, in the caller's transaction:
 * rolled back, nothing happens; committed, whoever waits for it (the run
 * handler's ctx.promise(name).get(), a shared handler) gets it once.
 */
CREATE FUNCTION durable.resolve_promise(workflow text, key text, name text,
                                        value jsonb DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._complete_promise(workflow, key, name,
               CASE WHEN value IS NOT NULL
                    THEN pg_catalog.convert_to(value::pg_catalog.text, 'UTF8') END,
               NULL)
$$;

CREATE FUNCTION durable.resolve_promise(workflow text, key text, name text, value bytea)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._complete_promise(workflow, key, name, value, NULL)
$$;

CREATE FUNCTION durable.reject_promise(workflow text, key text, name text, reason text)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._complete_promise(workflow, key, name, NULL, coalesce(reason, ''))
$$;

-- The id of a workflow's run for this key (it runs once per key); NULL if
-- it was never started.  Use it with durable.await and durable.output.
CREATE FUNCTION durable.workflow_invocation(workflow text, key text)
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.id FROM durable.invocation i
     WHERE i.service_name OPERATOR(pg_catalog.=) workflow
       AND i.workflow_key OPERATOR(pg_catalog.=) key
$$;

-- Workflow promises that were read or completed: completed ones and those
-- someone waits for.  A completion from SQL shows once a dispatcher has
-- delivered it (right after the commit).
CREATE VIEW durable.promises AS
SELECT p.service_name, p.service_key, p.name,
       CASE WHEN NOT p.completed THEN 'pending'
            WHEN p.failure_code IS NOT NULL THEN 'rejected'
            ELSE 'resolved' END AS status,
       durable.bytes_to_jsonb(p.value) AS value,
       p.value AS value_raw,
       p.failure_code,
       p.failure_message,
       p.completed_at,
       (SELECT count(*) FROM durable.promise_waiter w
         WHERE w.service_name = p.service_name AND w.service_key = p.service_key
           AND w.name = p.name) AS waiters
  FROM durable.promise p;

/*
 * ---------------------------------------------------------------------------
 * Keyed state from SQL
 * ---------------------------------------------------------------------------
 */

/*
 * Checks that nothing holds the key's lock: an exclusive invocation that
 * has started and not completed would overwrite, or never see, a change
 * made under it.  The key's state lock is taken (until commit) so that no
 * exclusive invocation of the key starts between this check and the
 * commit; invocations of other keys are not held up.
 */
CREATE FUNCTION durable._check_state_writable(p_service text, p_key text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    holder text;
    ty     text;
BEGIN
    IF p_service IS NULL OR p_key IS NULL THEN
        RAISE EXCEPTION 'service and key must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT s.ty INTO ty FROM durable.service s WHERE s.name = p_service;
    IF ty IS NULL THEN
        RAISE EXCEPTION 'service "%" not found', p_service
            USING ERRCODE = 'undefined_object';
    END IF;
    IF ty = 'service' THEN
        RAISE EXCEPTION 'service "%" is not keyed and has no state', p_service
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Only virtual objects and workflows keep state.';
    END IF;
    -- Claims skip an exclusive invocation of a key whose lock is held here
    -- (see the claim in src/journal_store.c); other keys run on.
    PERFORM pg_advisory_xact_lock(1146441282, hashtext(p_service || '/' || p_key));
    SELECT i.id INTO holder FROM durable.invocation i
     WHERE i.service_name = p_service AND i.service_key = p_key
       AND i.status <> 'completed' AND i.running_at IS NOT NULL
       AND i.handler_ty IN ('exclusive', 'workflow')
     LIMIT 1;
    IF holder IS NOT NULL THEN
        RAISE EXCEPTION 'the state of %/% is in use by invocation %', p_service, p_key, holder
            USING ERRCODE = 'object_in_use',
                  DETAIL = 'An exclusive invocation of this key has started and not completed; it would overwrite the change, or never see it.',
                  HINT = 'Try again when it has completed (durable.await), or cancel it.';
    END IF;
END;
$$;

CREATE FUNCTION durable.set_state(service text, key text, name text, value bytea)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF set_state.name IS NULL OR set_state.value IS NULL THEN
        RAISE EXCEPTION 'state name and value must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Use durable.clear_state() to remove an entry.';
    END IF;
    PERFORM durable._check_state_writable(set_state.service, set_state.key);
    INSERT INTO durable.state_entry AS s (service_name, service_key, key, value)
    VALUES (set_state.service, set_state.key, set_state.name, set_state.value)
    ON CONFLICT ON CONSTRAINT state_entry_pkey DO UPDATE SET value = excluded.value;
END;
$$;

CREATE FUNCTION durable.set_state(service text, key text, name text, value jsonb)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable.set_state(service, key, name,
                             pg_catalog.convert_to(value::pg_catalog.text, 'UTF8'))
$$;

-- Removes one entry, or (name NULL) all of the key's state.  Returns how
-- many entries were removed.
CREATE FUNCTION durable.clear_state(service text, key text, name text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM durable._check_state_writable(clear_state.service, clear_state.key);
    DELETE FROM durable.state_entry s
     WHERE s.service_name = clear_state.service AND s.service_key = clear_state.key
       AND (clear_state.name IS NULL OR s.key = clear_state.name);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

/*
 * Options from a manifest (service or handler) that the dispatchers use,
 * read defensively: a value that is missing, not a number or out of range
 * is NULL (the durable.* setting applies), never an error, so that no
 * stored manifest can make a claim fail.  durable.register_deployment
 * rejects such values with a clear error in the first place.
 */
CREATE FUNCTION durable._option_number(options jsonb, field text,
                                       low numeric, high numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(options -> field) = 'number'
                 AND (options ->> field)::numeric BETWEEN low AND high
                THEN (options ->> field)::numeric END
$$;

-- The ranges are those durable._check_manifest_options accepts.
CREATE FUNCTION durable._option_ms(options jsonb, field text)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT round(durable._option_number(options, field, 0, 9007199254740991))::bigint
$$;

CREATE FUNCTION durable._option_count(options jsonb, field text)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT trunc(durable._option_number(options, field, 0, 2147483647))::integer
$$;

CREATE FUNCTION durable._option_factor(options jsonb, field text)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT durable._option_number(options, field, 1, 100)::float8
$$;

/*
 * ---------------------------------------------------------------------------
 * Privileges.  Only the extension's owner may use it until it grants more:
 * send, await, output and register_deployment run as their owner (SECURITY
 * DEFINER, with a pinned search_path) and check nothing else, so EXECUTE on
 * them is the permission to start and read invocations; call runs as its
 * caller and is send + await, so it needs EXECUTE on those too.  Internal
 * functions (names starting with "_") are for the owner only.  See
 * docs/security.md and docs/sql-api.md, "Letting other roles use durable".
 * ---------------------------------------------------------------------------
 */
REVOKE ALL ON ALL TABLES IN SCHEMA durable FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA durable FROM PUBLIC;
GRANT EXECUTE ON FUNCTION durable.new_invocation_id(text, text),
                          durable.invocation_id_bytes(text),
                          durable.invocation_id_from_bytes(bytea),
                          durable.decode_entry(integer, bytea),
                          durable.entry_type_name(integer),
                          durable.entry_kind(integer),
                          durable.entry_type(text),
                          durable.bytes_to_jsonb(bytea)
    TO PUBLIC;

-- Let the dispatchers know a fresh installation is ready.
SELECT durable._wake_at_commit();
