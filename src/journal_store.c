/*-------------------------------------------------------------------------
 *
 * journal_store.c
 *	  Storage of invocations, journals, state and timers for the runtime:
 *	  each function runs one or a few prepared statements and decides
 *	  nothing.
 *
 * Every statement is prepared once per process and kept for its life
 * (SPI_keepplan); the dispatcher pins search_path to pg_catalog before the
 * first one, so names resolve to durable's and PostgreSQL's objects only.
 * Status names come from constants.h.  The rules about which status follows
 * which live in lifecycle.c; the one rule expressed in SQL is the lock queue
 * of virtual objects (the view durable._invocation_queue), because both the
 * claim and the durable.invocations view must apply it identically.
 *
 * IDENTIFICATION
 *	  src/journal_store.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/detoast.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "constants.h"
#include "durable.h"
#include "journal_store.h"
#include "protocol.h"

typedef struct StoredQuery
{
	const char *sql;
	int			nargs;
	Oid			argtypes[20];
	SPIPlanPtr	plan;
} StoredQuery;

#define RUNNABLE "('" STATUS_READY "', '" STATUS_SCHEDULED "', '" STATUS_BACKING_OFF "')"

static StoredQuery q_lock = {
	"SELECT status, claimed_by, journal_size, retry_count_since_last_stored_entry, "
	"waiting_completions, waiting_signals, waiting_named_signals, "
	"running_at IS NOT NULL, service_key IS NOT NULL, "
	"coalesce(root_invocation_id, id) "
	"FROM durable.invocation WHERE id = $1 FOR UPDATE",
	1, {TEXTOID}
};
static StoredQuery q_update = {
	"UPDATE durable.invocation SET status = $2, "
	"journal_size = journal_size + $3, "
	"last_stored_entry_at = CASE WHEN $3 > 0 THEN clock_timestamp() "
	"                            ELSE last_stored_entry_at END, "
	"retry_count_since_last_stored_entry = CASE WHEN $4 < 0 "
	"    THEN retry_count_since_last_stored_entry ELSE $4 END, "
	"retry_count = retry_count + $5, "
	"run_at = $6, "
	"next_retry_at = CASE WHEN $2 = '" STATUS_BACKING_OFF "' THEN $6 END, "
	"claimed_by = CASE WHEN $7 THEN claimed_by END, "
	"waiting_completions = $8, waiting_signals = $9, waiting_named_signals = $10, "
	"last_failure = coalesce($11, last_failure), "
	"last_failure_error_code = CASE WHEN $11 IS NULL THEN last_failure_error_code "
	"                               ELSE $12 END, "
	"completion_result = CASE WHEN $13 THEN CASE WHEN $14 THEN 'failure' "
	"                                            ELSE 'success' END END, "
	"output = $15, completion_failure_code = $16, completion_failure = $17, "
	"completion_failure_metadata = CASE WHEN cardinality($18) > 0 "
	"                                   THEN jsonb_object($18, $19) END, "
	"completed_at = CASE WHEN $13 THEN now() END, "
	"modified_at = now() "
	"WHERE id = $1",
	19, {TEXTOID, TEXTOID, INT4OID, INT4OID, INT4OID, TIMESTAMPTZOID, BOOLOID,
		INT4ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTOID, INT4OID, BOOLOID,
	BOOLOID, BYTEAOID, INT4OID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID}
};
static StoredQuery q_note_appended = {
	"UPDATE durable.invocation SET journal_size = journal_size + $2, "
	"last_stored_entry_at = clock_timestamp(), "
	"retry_count_since_last_stored_entry = 0, modified_at = now() "
	"WHERE id = $1",
	2, {TEXTOID, INT4OID}
};
static StoredQuery q_append = {
	"INSERT INTO durable.journal_entry (invocation_id, index, entry_type, name, "
	"completion_id, signal_id, signal_name, raw, invoked_id, invoked_target) "
	"SELECT $1, $2 + u.ord - 1, u.t, u.n, u.c, u.s, u.sn, u.r, u.ii, u.it "
	"FROM unnest($3::int4[], $4::text[], $5::int4[], $6::int4[], $7::text[], $8::bytea[], "
	"            $9::text[], $10::text[]) "
	"WITH ORDINALITY AS u(t, n, c, s, sn, r, ii, it, ord)",
	10, {TEXTOID, INT4OID, INT4ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
	TEXTARRAYOID, 1001 /* bytea[] */ , TEXTARRAYOID, TEXTARRAYOID}
};
static StoredQuery q_set_state = {
	"INSERT INTO durable.state_entry (service_name, service_key, key, value) "
	"VALUES ($1, $2, $3, $4) ON CONFLICT (service_name, service_key, key) "
	"DO UPDATE SET value = excluded.value",
	4, {TEXTOID, TEXTOID, TEXTOID, BYTEAOID}
};
static StoredQuery q_clear_state = {
	"DELETE FROM durable.state_entry "
	"WHERE service_name = $1 AND service_key = $2 AND key = $3",
	3, {TEXTOID, TEXTOID, TEXTOID}
};
static StoredQuery q_clear_all_state = {
	"DELETE FROM durable.state_entry WHERE service_name = $1 AND service_key = $2",
	2, {TEXTOID, TEXTOID}
};
static StoredQuery q_add_timer = {
	"INSERT INTO durable.timer (invocation_id, completion_id, wake_at) "
	"VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
	3, {TEXTOID, INT4OID, TIMESTAMPTZOID}
};
static StoredQuery q_delete_timers = {
	"DELETE FROM durable.timer WHERE invocation_id = $1",
	1, {TEXTOID}
};
static StoredQuery q_has_notification = {
	"SELECT EXISTS (SELECT 1 FROM durable.journal_entry j "
	"WHERE j.invocation_id = $1 AND j.entry_type >= $5 AND j.entry_type < $6 "
	"AND (j.completion_id = ANY ($2) OR j.signal_id = ANY ($3) "
	"     OR j.signal_name = ANY ($4)))",
	6, {TEXTOID, INT4ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, INT4OID, INT4OID}
};
/*
 * Claims are serialised until the claiming transaction commits, so that
 * each claim sees which exclusive invocations the previous one started:
 * without that, two dispatchers could each start a different invocation of
 * the same virtual object key.  A statement of its own, so that the claim
 * that follows takes its snapshot after the lock.  The claim is among the
 * last steps of a dispatcher's transaction, so the lock is held briefly.
 */
static StoredQuery q_claim_lock = {
	"SELECT pg_advisory_xact_lock(1146441281, 1)",	/* 'DURA', 1: claims */
	0, {}
};
static StoredQuery q_claim = {
	"WITH picked AS ("
	"  SELECT q.id FROM durable._invocation_queue q"
	"   WHERE q.status IN " RUNNABLE " AND q.run_at <= now() AND NOT q.behind_lock"
	/* durable.set_state/clear_state of its key in progress: next time */
	"     AND (q.state_owner_key IS NULL OR"
	"          pg_try_advisory_xact_lock_shared(1146441282, hashtext(q.state_owner_key)))"
	"   ORDER BY q.run_at LIMIT $2 FOR UPDATE SKIP LOCKED"
	"), claimed AS ("
	"  UPDATE durable.invocation i SET status = '" STATUS_RUNNING "', claimed_by = $1,"
	"         running_at = now(), modified_at = now(), next_retry_at = NULL,"
	"         pinned_deployment_id = coalesce(i.pinned_deployment_id,"
	"             (SELECT s.deployment_id FROM durable.service s"
	"               WHERE s.name = i.service_name))"
	"    FROM picked p WHERE i.id = p.id"
	"  RETURNING i.*"
	") "
	"SELECT c.id, c.service_name, c.handler_name, c.service_key, d.uri,"
	"       (SELECT string_agg(e.key || ': ' || e.value, chr(10))"
	"          FROM jsonb_each_text(d.headers) e),"
	"       d.http_version, d.protocol_version, c.random_seed,"
	"       c.retry_count_since_last_stored_entry,"
	"       (extract(epoch FROM clock_timestamp() - c.last_stored_entry_at) * 1000)::bigint,"
	/* The handler's and the service's options: read in C, see option_value */
	"       h.options, sv.options,"
	"       d.protocol_mode = 'BIDI_STREAM'"
	"  FROM claimed c"
	"  LEFT JOIN durable.deployment d ON d.id = c.pinned_deployment_id"
	"  LEFT JOIN durable.service sv ON sv.name = c.service_name"
	"  LEFT JOIN durable.handler h ON h.service_name = c.service_name"
	"                             AND h.name = c.handler_name",
	2, {INT4OID, INT4OID}
};
static StoredQuery q_load_journal = {
	"SELECT entry_type, raw FROM durable.journal_entry "
	"WHERE invocation_id = $1 ORDER BY index",
	1, {TEXTOID}
};
static StoredQuery q_load_state = {
	"SELECT key, value FROM durable.state_entry "
	"WHERE service_name = $1 AND service_key = $2 ORDER BY key",
	2, {TEXTOID, TEXTOID}
};
static StoredQuery q_notifications_since = {
	"SELECT c.ord::int4, j.index, j.entry_type, j.raw"
	"  FROM unnest($1::text[], $2::int4[]) WITH ORDINALITY AS c(id, idx, ord),"
	/*
	 * A lateral subquery that is not flattened (OFFSET 0): one index range
	 * scan per stream.  Joined, the generic plan hashes the whole journal.
	 */
	"       LATERAL (SELECT e.index, e.entry_type, e.raw"
	"                  FROM durable.journal_entry e"
	"                 WHERE e.invocation_id = c.id AND e.index >= c.idx"
	/* MSG_FIRST_NOTIFICATION and MSG_FIRST_CUSTOM (checked below) */
	"                   AND e.entry_type >= 32768 AND e.entry_type < 64512"
	"                OFFSET 0) j"
	" ORDER BY c.ord, j.index",
	2, {TEXTARRAYOID, INT4ARRAYOID}
};
static StoredQuery q_release_orphans = {
	"UPDATE durable.invocation SET status = '" STATUS_READY "', run_at = now(),"
	"       claimed_by = NULL, modified_at = now()"
	" WHERE status = '" STATUS_RUNNING "'"
	"   AND (claimed_by = $1"
	"        OR ($1 = 0 AND (claimed_by IS NULL OR claimed_by >= $2)))"
	"   AND id <> ALL ($3)",
	3, {INT4OID, INT4OID, TEXTARRAYOID}
};
static StoredQuery q_due_timers = {
	"SELECT invocation_id, completion_id FROM durable.timer "
	"WHERE wake_at <= now() ORDER BY wake_at LIMIT $1 FOR UPDATE SKIP LOCKED",
	1, {INT4OID}
};
static StoredQuery q_delete_timer = {
	"DELETE FROM durable.timer WHERE invocation_id = $1 AND completion_id = $2",
	2, {TEXTOID, INT4OID}
};
static StoredQuery q_postpone_timer = {
	"UPDATE durable.timer SET wake_at = now() + $3 * interval '1 millisecond' "
	"WHERE invocation_id = $1 AND completion_id = $2",
	3, {TEXTOID, INT4OID, INT4OID}
};
static StoredQuery q_queue_notification = {
	"INSERT INTO durable.notification_queue (invocation_id, entry_type, signal_index, "
	"signal_name, completion_id, raw) "
	"VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
	6, {TEXTOID, INT4OID, INT4OID, TEXTOID, INT4OID, BYTEAOID}
};
static StoredQuery q_queue_kill = {
	"INSERT INTO durable.notification_queue (invocation_id, action) VALUES ($1, 'kill')",
	1, {TEXTOID}
};
static StoredQuery q_due_signals = {
	"SELECT id, invocation_id, signal_index, signal_name, raw, action, entry_type, "
	"completion_id, service_name, service_key, promise_name "
	"FROM durable.notification_queue "
	"WHERE deliver_after <= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
	1, {INT4OID}
};
static StoredQuery q_delete_signal = {
	"DELETE FROM durable.notification_queue WHERE id = $1",
	1, {INT8OID}
};
static StoredQuery q_postpone_signal = {
	"UPDATE durable.notification_queue SET deliver_after = now() + $2 * interval '1 millisecond' "
	"WHERE id = $1",
	2, {INT8OID, INT4OID}
};
static StoredQuery q_next_wakeup = {
	"SELECT least((SELECT min(q.run_at) FROM durable._invocation_queue q"
	"               WHERE q.status IN " RUNNABLE " AND NOT q.behind_lock),"
	"             (SELECT min(t.wake_at) FROM durable.timer t),"
	"             (SELECT min(s.deliver_after) FROM durable.notification_queue s))",
	0, {}
};

static StoredQuery q_create_invocation = {
	"SELECT durable._enqueue($1, $2, $3, "
	"  CASE WHEN (SELECT s.ty FROM durable.service s WHERE s.name = $1) = 'service' "
	"       AND $4 = '' THEN NULL ELSE $4 END, "
	"  $5, NULL, "
	"  (SELECT coalesce(jsonb_object_agg(u.k, u.v), '{}') FROM unnest($6::text[], $7::text[]) u(k, v)), "
	"  'service', $8, $9, $10)",
	10, {TEXTOID, TEXTOID, BYTEAOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTOID, TEXTOID, TIMESTAMPTZOID}
};
static StoredQuery q_invocation_result = {
	"SELECT status = '" STATUS_COMPLETED "', completion_result = 'failure', output, "
	"completion_failure_code, completion_failure, "
	"ARRAY(SELECT m.key FROM jsonb_each_text(completion_failure_metadata) m ORDER BY m.key), "
	"ARRAY(SELECT m.value FROM jsonb_each_text(completion_failure_metadata) m ORDER BY m.key) "
	"FROM durable.invocation WHERE id = $1 FOR SHARE",
	1, {TEXTOID}
};
/* The same lookups durable.send makes (one definition of each, in SQL). */
static StoredQuery q_find_by_idempotency_key = {
	"SELECT durable._existing_invocation($1, $3, $2, $4, NULL)",
	4, {TEXTOID, TEXTOID, TEXTOID, TEXTOID}
};
static StoredQuery q_find_workflow = {
	"SELECT durable.workflow_invocation($1, $2)",
	2, {TEXTOID, TEXTOID}
};
static StoredQuery q_add_invocation_waiter = {
	"INSERT INTO durable.invocation_waiter (invocation_id, waiter_id, completion_id, entry_type) "
	"VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
	4, {TEXTOID, TEXTOID, INT4OID, INT4OID}
};
static StoredQuery q_take_invocation_waiters = {
	"DELETE FROM durable.invocation_waiter WHERE invocation_id = $1 "
	"RETURNING waiter_id, completion_id, entry_type",
	1, {TEXTOID}
};
static StoredQuery q_take_waits_of = {
	"DELETE FROM durable.invocation_waiter w WHERE w.waiter_id = $1 "
	"RETURNING w.invocation_id, w.entry_type, "
	"          EXISTS (SELECT 1 FROM durable.invocation c "
	"                   WHERE c.id = w.invocation_id AND c.invoked_by_id = $1)",
	1, {TEXTOID}
};
static StoredQuery q_lock_promise = {
	"WITH ins AS (INSERT INTO durable.promise (service_name, service_key, name) "
	"             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING) "
	"SELECT 1",
	3, {TEXTOID, TEXTOID, TEXTOID}
};
static StoredQuery q_read_promise = {
	"SELECT completed, failure_code IS NOT NULL, value, failure_code, failure_message "
	"FROM durable.promise WHERE service_name = $1 AND service_key = $2 AND name = $3 "
	"FOR UPDATE",
	3, {TEXTOID, TEXTOID, TEXTOID}
};
static StoredQuery q_complete_promise = {
	"UPDATE durable.promise SET completed = true, value = $4, failure_code = $5, "
	"failure_message = $6, completed_at = now() "
	"WHERE service_name = $1 AND service_key = $2 AND name = $3",
	6, {TEXTOID, TEXTOID, TEXTOID, BYTEAOID, INT4OID, TEXTOID}
};
static StoredQuery q_add_promise_waiter = {
	"INSERT INTO durable.promise_waiter (service_name, service_key, name, waiter_id, "
	"completion_id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
	5, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID}
};
static StoredQuery q_take_promise_waiters = {
	"DELETE FROM durable.promise_waiter WHERE service_name = $1 AND service_key = $2 "
	"AND name = $3 RETURNING waiter_id, completion_id",
	3, {TEXTOID, TEXTOID, TEXTOID}
};

/*
 * Idempotency keys outlive their invocation's completion by the handler's
 * idempotencyRetention, 24 hours if the manifest says nothing; then the key
 * is forgotten and a new send with it starts a new invocation.  A bounded
 * batch per call.
 */
static StoredQuery q_expire_idempotency_keys = {
	"UPDATE durable.invocation SET idempotency_key = NULL "
	"WHERE id IN (SELECT i.id FROM durable.invocation i "
	"             LEFT JOIN durable.handler h "
	"                    ON h.service_name = i.service_name AND h.name = i.handler_name "
	"             WHERE i.idempotency_key IS NOT NULL "
	"               AND i.status = '" STATUS_COMPLETED "' "
	"               AND i.completed_at < now() - interval '1 millisecond' * "
	"                   coalesce(durable._option_ms(h.options, 'idempotencyRetention'), "
	"                            86400000) "
	"             LIMIT $1 FOR UPDATE OF i SKIP LOCKED)",
	1, {INT4OID}
};

/*
 * A workflow's run is kept for its workflowCompletionRetention (24 hours if
 * the manifest says nothing) after it completed; then its key may run
 * again, and the workflow's promises and state are removed, as Restate
 * does.  A bounded batch per call.
 */
static StoredQuery q_expire_workflows = {
	"WITH expired AS ("
	"  UPDATE durable.invocation SET workflow_key = NULL "
	"  WHERE id IN (SELECT i.id FROM durable.invocation i "
	"               LEFT JOIN durable.handler h "
	"                      ON h.service_name = i.service_name AND h.name = i.handler_name "
	"               LEFT JOIN durable.service sv ON sv.name = i.service_name "
	"               WHERE i.workflow_key IS NOT NULL "
	"                 AND i.status = '" STATUS_COMPLETED "' "
	"                 AND i.completed_at < now() - interval '1 millisecond' * "
	"                     coalesce(durable._option_ms(h.options, 'workflowCompletionRetention'), "
	"                              durable._option_ms(sv.options, 'workflowCompletionRetention'), "
	"                              86400000) "
	"               LIMIT $1 FOR UPDATE OF i SKIP LOCKED) "
	"  RETURNING service_name, service_key), "
	"p AS (DELETE FROM durable.promise d USING expired e "
	"      WHERE d.service_name = e.service_name AND d.service_key = e.service_key), "
	"w AS (DELETE FROM durable.promise_waiter d USING expired e "
	"      WHERE d.service_name = e.service_name AND d.service_key = e.service_key), "
	"s AS (DELETE FROM durable.state_entry d USING expired e "
	"      WHERE d.service_name = e.service_name AND d.service_key = e.service_key) "
	"SELECT count(*) FROM expired",
	1, {INT4OID}
};

static StoredQuery *all_queries[] = {
	&q_expire_idempotency_keys, &q_expire_workflows,
	&q_create_invocation, &q_invocation_result, &q_find_by_idempotency_key,
	&q_find_workflow, &q_add_invocation_waiter, &q_take_invocation_waiters,
	&q_take_waits_of, &q_lock_promise, &q_read_promise, &q_complete_promise,
	&q_add_promise_waiter, &q_take_promise_waiters, &q_queue_kill,
	&q_lock, &q_update, &q_note_appended, &q_append, &q_set_state, &q_clear_state,
	&q_clear_all_state, &q_add_timer, &q_delete_timers, &q_has_notification,
	&q_claim_lock, &q_claim, &q_load_journal, &q_notifications_since, &q_load_state, &q_release_orphans,
	&q_due_timers, &q_delete_timer, &q_postpone_timer, &q_queue_notification,
	&q_due_signals, &q_delete_signal, &q_postpone_signal, &q_next_wakeup
};

static SPIPlanPtr
plan_for(StoredQuery *q)
{
	if (q->plan == NULL)
	{
		/*
		 * Generic plans, made once: the dispatcher runs these statements
		 * many times a second with different values, and planning each
		 * execution anew (which the plan cache does when a custom plan
		 * looks cheaper) cost more than running them.  Each statement is
		 * written so that its generic plan uses the indexes.
		 */
		SPIPlanPtr	plan = SPI_prepare_cursor(q->sql, q->nargs, q->argtypes,
											  CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 q->sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		q->plan = plan;
	}
	return q->plan;
}

void
store_forget_plans(void)
{
	for (size_t i = 0; i < lengthof(all_queries); i++)
	{
		if (all_queries[i]->plan != NULL)
			SPI_freeplan(all_queries[i]->plan);
		all_queries[i]->plan = NULL;
	}
}

/*
 * Every statement runs with read_only = false: that makes SPI take a fresh
 * snapshot after a CommandCounterIncrement, so a read sees what earlier
 * statements of the same dispatcher transaction wrote, and what other
 * transactions committed since (the journal entry a timer just added).
 */
static int
run(StoredQuery *q, Datum *values, const char *nulls, long tcount)
{
	int			rc = SPI_execute_plan(plan_for(q), values, nulls, false, tcount);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed for \"%s\": %s",
			 q->sql, SPI_result_code_string(rc));
	return rc;
}

static Datum
text_datum_or_null(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

static Datum
bytea_datum(const uint8 *data, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	if (len > 0)
		memcpy(VARDATA(b), data, len);
	return PointerGetDatum(b);
}

static Datum
int4_array_datum(int n, const uint32 *items)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = Int32GetDatum((int32) items[i]);
	return PointerGetDatum(construct_array(elems, n, INT4OID, 4, true, TYPALIGN_INT));
}

static Datum
text_array_datum(int n, char *const *items)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

static char *
get_text(HeapTuple tuple, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static ArrayType *
get_array(HeapTuple tuple, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);

	return isnull ? NULL : DatumGetArrayTypePCopy(d);
}

/* The items of a text[] without NULLs, as C strings; returns how many. */
static int
text_array_items(ArrayType *array, char ***items)
{
	Datum	   *datums;
	bool	   *nulls;
	int			n;

	*items = NULL;
	if (array == NULL)
		return 0;
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &datums, &nulls, &n);
	*items = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		(*items)[i] = nulls[i] ? "" : TextDatumGetCString(datums[i]);
	return n;
}

Oid
store_extension_oid(void)
{
	return get_extension_oid("durable", true);
}

InvocationRow
store_lock_invocation(const char *invocation_id)
{
	Datum		values[1] = {CStringGetTextDatum(invocation_id)};
	InvocationRow row = {0};
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	run(&q_lock, values, NULL, 1);
	if (SPI_processed == 0)
		return row;
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	row.found = true;
	row.status = get_text(tuple, desc, 1);
	d = SPI_getbinval(tuple, desc, 2, &isnull);
	row.claimed_by = isnull ? -1 : DatumGetInt32(d);
	row.journal_size = DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull));
	row.retry_count_since_last_stored_entry =
		DatumGetInt32(SPI_getbinval(tuple, desc, 4, &isnull));
	row.waiting_completions = get_array(tuple, desc, 5);
	row.waiting_signals = get_array(tuple, desc, 6);
	row.waiting_named_signals = get_array(tuple, desc, 7);
	row.started = DatumGetBool(SPI_getbinval(tuple, desc, 8, &isnull));
	row.keyed = DatumGetBool(SPI_getbinval(tuple, desc, 9, &isnull));
	row.root_id = get_text(tuple, desc, 10);
	return row;
}

void
store_update_invocation(const char *invocation_id, const InvocationUpdate *u)
{
	Datum		values[19];
	char		nulls[19];
	const WaitSet *w = &u->waits;
	bool		waits = w->n_completions + w->n_signals + w->n_named_signals > 0;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(invocation_id);
	values[1] = CStringGetTextDatum(u->status);
	values[2] = Int32GetDatum(u->appended);
	values[3] = Int32GetDatum(u->retry_count_since_last_stored_entry);
	values[4] = Int32GetDatum(u->failed_attempts);
	values[5] = TimestampTzGetDatum(u->run_at);
	nulls[5] = u->run_at != 0 ? ' ' : 'n';
	values[6] = BoolGetDatum(u->keep_claim);
	if (waits)
	{
		values[7] = int4_array_datum(w->n_completions, w->completions);
		values[8] = int4_array_datum(w->n_signals, w->signals);
		values[9] = text_array_datum(w->n_named_signals, w->named_signals);
	}
	else
		nulls[7] = nulls[8] = nulls[9] = 'n';
	values[10] = text_datum_or_null(u->last_failure, &nulls[10]);
	values[11] = Int32GetDatum(u->last_failure_code);
	values[12] = BoolGetDatum(u->completed);
	values[13] = BoolGetDatum(u->completion_failed);
	if (u->output != NULL)
		values[14] = bytea_datum(u->output, u->output_len);
	else
		nulls[14] = 'n';
	values[15] = Int32GetDatum(u->completion_failure_code);
	nulls[15] = u->completion_failed ? ' ' : 'n';
	values[16] = text_datum_or_null(u->completion_failed ? u->completion_failure : NULL,
									&nulls[16]);
	values[17] = text_array_datum(u->completion_failure_metadata.n,
								  u->completion_failure_metadata.keys);
	values[18] = text_array_datum(u->completion_failure_metadata.n,
								  u->completion_failure_metadata.values);
	run(&q_update, values, nulls, 0);
	if (SPI_processed != 1)
		elog(ERROR, "invocation \"%s\" vanished while it was being updated", invocation_id);
}

void
store_note_appended(const char *invocation_id, int appended)
{
	Datum		values[2];

	values[0] = CStringGetTextDatum(invocation_id);
	values[1] = Int32GetDatum(appended);
	run(&q_note_appended, values, NULL, 0);
}

void
store_append_entries(const char *invocation_id, int first_index, List *entries)
{
	int			n = list_length(entries);
	Datum	   *types;
	Datum	   *names;
	Datum	   *completions;
	Datum	   *signals;
	Datum	   *signal_names;
	Datum	   *raws;
	bool	   *name_nulls;
	bool	   *completion_nulls;
	bool	   *signal_nulls;
	bool	   *signal_name_nulls;
	Datum	   *invoked_ids;
	Datum	   *invoked_targets;
	bool	   *invoked_nulls;
	int			dims[1] = {n};
	int			lbs[1] = {1};
	Datum		values[10];
	int			i = 0;
	ListCell   *lc;

	if (n == 0)
		return;
	types = palloc(sizeof(Datum) * n);
	names = palloc(sizeof(Datum) * n);
	completions = palloc(sizeof(Datum) * n);
	signals = palloc(sizeof(Datum) * n);
	signal_names = palloc(sizeof(Datum) * n);
	raws = palloc(sizeof(Datum) * n);
	name_nulls = palloc(sizeof(bool) * n);
	completion_nulls = palloc(sizeof(bool) * n);
	signal_nulls = palloc(sizeof(bool) * n);
	signal_name_nulls = palloc(sizeof(bool) * n);
	invoked_ids = palloc(sizeof(Datum) * n);
	invoked_targets = palloc(sizeof(Datum) * n);
	invoked_nulls = palloc(sizeof(bool) * n);

	foreach(lc, entries)
	{
		NewEntry   *e = lfirst(lc);

		types[i] = Int32GetDatum((int32) e->type);
		name_nulls[i] = (e->name == NULL || e->name[0] == '\0');
		names[i] = name_nulls[i] ? (Datum) 0 : CStringGetTextDatum(e->name);
		completion_nulls[i] = (e->completion_id == 0);
		completions[i] = Int32GetDatum((int32) e->completion_id);
		signal_nulls[i] = (e->signal_id == 0);
		signals[i] = Int32GetDatum((int32) e->signal_id);
		signal_name_nulls[i] = (e->signal_name == NULL);
		signal_names[i] = signal_name_nulls[i] ? (Datum) 0 :
			CStringGetTextDatum(e->signal_name);
		raws[i] = bytea_datum(e->raw, e->len);
		invoked_nulls[i] = (e->invoked_id == NULL);
		invoked_ids[i] = e->invoked_id ? CStringGetTextDatum(e->invoked_id) : (Datum) 0;
		invoked_targets[i] = e->invoked_id ? CStringGetTextDatum(e->invoked_target) : (Datum) 0;
		i++;
	}

	values[0] = CStringGetTextDatum(invocation_id);
	values[1] = Int32GetDatum(first_index);
	values[2] = PointerGetDatum(construct_array(types, n, INT4OID, 4, true, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_md_array(names, name_nulls, 1, dims, lbs,
												   TEXTOID, -1, false, TYPALIGN_INT));
	values[4] = PointerGetDatum(construct_md_array(completions, completion_nulls, 1, dims,
												   lbs, INT4OID, 4, true, TYPALIGN_INT));
	values[5] = PointerGetDatum(construct_md_array(signals, signal_nulls, 1, dims, lbs,
												   INT4OID, 4, true, TYPALIGN_INT));
	values[6] = PointerGetDatum(construct_md_array(signal_names, signal_name_nulls, 1,
												   dims, lbs, TEXTOID, -1, false,
												   TYPALIGN_INT));
	values[7] = PointerGetDatum(construct_array(raws, n, BYTEAOID, -1, false, TYPALIGN_INT));
	values[8] = PointerGetDatum(construct_md_array(invoked_ids, invoked_nulls, 1, dims, lbs,
												   TEXTOID, -1, false, TYPALIGN_INT));
	values[9] = PointerGetDatum(construct_md_array(invoked_targets, invoked_nulls, 1, dims,
												   lbs, TEXTOID, -1, false, TYPALIGN_INT));
	run(&q_append, values, NULL, 0);
}

void
store_write_state(const char *service, const char *key, List *writes)
{
	ListCell   *lc;

	foreach(lc, writes)
	{
		StateWrite *w = lfirst(lc);
		Datum		values[4];

		values[0] = CStringGetTextDatum(service);
		values[1] = CStringGetTextDatum(key);
		switch (w->kind)
		{
			case STATE_WRITE_SET:
				values[2] = CStringGetTextDatum(w->key);
				values[3] = bytea_datum(w->value, w->len);
				run(&q_set_state, values, NULL, 0);
				break;
			case STATE_WRITE_CLEAR:
				values[2] = CStringGetTextDatum(w->key);
				run(&q_clear_state, values, NULL, 0);
				break;
			case STATE_WRITE_CLEAR_ALL:
				run(&q_clear_all_state, values, NULL, 0);
				break;
		}
	}
}

void
store_add_timers(const char *invocation_id, List *timers)
{
	ListCell   *lc;

	foreach(lc, timers)
	{
		NewTimer   *t = lfirst(lc);
		Datum		values[3];

		values[0] = CStringGetTextDatum(invocation_id);
		values[1] = Int32GetDatum((int32) t->completion_id);
		values[2] = TimestampTzGetDatum(t->wake_at);
		run(&q_add_timer, values, NULL, 0);
	}
}

void
store_delete_timers(const char *invocation_id)
{
	Datum		values[1] = {CStringGetTextDatum(invocation_id)};

	run(&q_delete_timers, values, NULL, 0);
}

bool
store_has_notification(const char *invocation_id, const WaitSet *waits)
{
	Datum		values[6];
	bool		isnull;

	values[0] = CStringGetTextDatum(invocation_id);
	values[1] = int4_array_datum(waits->n_completions, waits->completions);
	values[2] = int4_array_datum(waits->n_signals, waits->signals);
	values[3] = text_array_datum(waits->n_named_signals, waits->named_signals);
	values[4] = Int32GetDatum(MSG_FIRST_NOTIFICATION);
	values[5] = Int32GetDatum(MSG_FIRST_CUSTOM);
	run(&q_has_notification, values, NULL, 1);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
}

static Jsonb *
get_jsonb(HeapTuple tuple, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);

	return isnull ? NULL : DatumGetJsonbP(d);
}

typedef enum OptionKind
{
	OPTION_MS,					/* 0 .. 2^53-1, rounded */
	OPTION_COUNT,				/* 0 .. 2^31-1, truncated */
	OPTION_FACTOR				/* 1 .. 100 */
} OptionKind;

/* A number field of a manifest's options within range, or false. */
static bool
option_number(Jsonb *options, const char *field, OptionKind kind, double *value)
{
	JsonbValue *v;
	double		x;

	if (options == NULL || !JB_ROOT_IS_OBJECT(options))
		return false;
	v = getKeyJsonValueFromContainer(&options->root, field, strlen(field), NULL);
	if (v == NULL || v->type != jbvNumeric)
		return false;
	x = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
										   NumericGetDatum(v->val.numeric)));
	switch (kind)
	{
		case OPTION_MS:
			if (!(x >= 0 && x <= 9007199254740991.0))
				return false;
			*value = round(x);
			return true;
		case OPTION_COUNT:
			if (!(x >= 0 && x <= (double) PG_INT32_MAX))
				return false;
			*value = trunc(x);
			return true;
		case OPTION_FACTOR:
			if (!(x >= 1 && x <= 100))
				return false;
			*value = x;
			return true;
	}
	return false;
}

/*
 * A handler option from the manifest (discovery v2+), else the service's,
 * else the setting's default: what durable._option_ms/_count/_factor
 * compute in SQL, done here because the claim runs many times a second.
 */
static double
option_value(Jsonb *handler, Jsonb *service, const char *field, OptionKind kind,
			 double fallback)
{
	double		v;

	if (option_number(handler, field, kind, &v) ||
		option_number(service, field, kind, &v))
		return v;
	return fallback;
}

/* A string option of the handler, else of the service; NULL if neither. */
static char *
option_text(Jsonb *handler, Jsonb *service, const char *field)
{
	Jsonb	   *sources[2] = {handler, service};

	for (int i = 0; i < 2; i++)
	{
		JsonbValue *v;

		if (sources[i] == NULL || !JB_ROOT_IS_OBJECT(sources[i]))
			continue;
		v = getKeyJsonValueFromContainer(&sources[i]->root, field, strlen(field), NULL);
		if (v != NULL && v->type == jbvString)
			return pnstrdup(v->val.string.val, v->val.string.len);
		/* Not a string: the SQL lookup would give its JSON text. */
		if (v != NULL && v->type != jbvNull)
			return pstrdup("");
	}
	return NULL;
}

List *
store_claim(int worker, int limit, MemoryContext attempt_parent,
			MemoryContext list_cxt)
{
	Datum		values[2] = {Int32GetDatum(worker), Int32GetDatum(limit)};
	List	   *attempts = NIL;

	run(&q_claim_lock, NULL, NULL, 1);
	run(&q_claim, values, NULL, 0);

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Attempt    *a = attempt_create(attempt_parent);
		MemoryContext old = MemoryContextSwitchTo(a->cxt);
		bool		isnull;
		Datum		d;
		char	   *on_max;
		Jsonb	   *handler_options;
		Jsonb	   *service_options;

		a->invocation_id = get_text(tuple, desc, 1);
		a->service_name = get_text(tuple, desc, 2);
		a->handler_name = get_text(tuple, desc, 3);
		a->service_key = get_text(tuple, desc, 4);
		a->uri = get_text(tuple, desc, 5);
		a->deployment_headers = get_text(tuple, desc, 6);
		a->http_version = get_text(tuple, desc, 7);
		d = SPI_getbinval(tuple, desc, 8, &isnull);
		a->protocol_version = isnull ? PROTOCOL_MAX_VERSION : DatumGetInt32(d);
		a->random_seed = (uint64) DatumGetInt64(SPI_getbinval(tuple, desc, 9, &isnull));
		a->retry_count_since_last_stored_entry =
			DatumGetInt32(SPI_getbinval(tuple, desc, 10, &isnull));
		d = SPI_getbinval(tuple, desc, 11, &isnull);
		a->ms_since_last_stored_entry = isnull ? 0 : Max(0, DatumGetInt64(d));
		handler_options = get_jsonb(tuple, desc, 12);
		service_options = get_jsonb(tuple, desc, 13);
		a->inactivity_timeout_ms = (long)
			option_value(handler_options, service_options, "inactivityTimeout",
						 OPTION_MS, durable_inactivity_timeout_ms);
		a->abort_timeout_ms = (long)
			option_value(handler_options, service_options, "abortTimeout",
						 OPTION_MS, durable_abort_timeout_ms);
		a->retry.initial_interval_ms = (int64)
			option_value(handler_options, service_options, "retryPolicyInitialInterval",
						 OPTION_MS, durable_retry_initial_interval_ms);
		a->retry.max_interval_ms = (int64)
			option_value(handler_options, service_options, "retryPolicyMaxInterval",
						 OPTION_MS, durable_retry_max_interval_ms);
		a->retry.factor =
			option_value(handler_options, service_options, "retryPolicyExponentiationFactor",
						 OPTION_FACTOR, durable_retry_exponentiation_factor);
		a->retry.max_attempts = (int)
			option_value(handler_options, service_options, "retryPolicyMaxAttempts",
						 OPTION_COUNT, durable_retry_max_attempts);
		on_max = option_text(handler_options, service_options, "retryPolicyOnMaxAttempts");
		if (on_max != NULL)
			on_max = str_tolower(on_max, strlen(on_max), DEFAULT_COLLATION_OID);
		a->retry.kill_on_max = on_max ? strcmp(on_max, "kill") == 0 :
			durable_retry_on_max_attempts == RETRY_EXHAUSTED_KILL;
		/* Streams need HTTP/2: one request, both directions at once. */
		d = SPI_getbinval(tuple, desc, 14, &isnull);
		a->bidi = durable_bidi && !isnull && DatumGetBool(d) &&
			http_version_from_text(a->http_version) != HTTP_VERSION_1_1;
		MemoryContextSwitchTo(list_cxt);
		attempts = lappend(attempts, a);
		MemoryContextSwitchTo(old);
	}
	return attempts;
}

List *
store_notifications_since(int n, const char **ids, const int *cursors)
{
	Datum	   *id_datums;
	Datum	   *cursor_datums;
	Datum		values[2];
	List	   *result = NIL;

	StaticAssertStmt(MSG_FIRST_NOTIFICATION == 32768 && MSG_FIRST_CUSTOM == 64512,
					 "q_notifications_since names the notification range");
	id_datums = palloc(sizeof(Datum) * Max(n, 1));
	cursor_datums = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		id_datums[i] = CStringGetTextDatum(ids[i]);
		cursor_datums[i] = Int32GetDatum(cursors[i]);
	}
	values[0] = PointerGetDatum(construct_array(id_datums, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(cursor_datums, n, INT4OID, 4, true, TYPALIGN_INT));
	run(&q_notifications_since, values, NULL, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		StoredNotification *e = palloc(sizeof(StoredNotification));

		e->which = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull)) - 1;
		e->index = DatumGetInt32(SPI_getbinval(tuple, desc, 2, &isnull));
		e->type = (uint16) DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull));
		e->raw = DatumGetByteaPCopy(SPI_getbinval(tuple, desc, 4, &isnull));
		result = lappend(result, e);
	}
	return result;
}

static void
load_state(Attempt *a)
{
	Datum		values[2];

	if (a->service_key == NULL)
		return;
	values[0] = CStringGetTextDatum(a->service_name);
	values[1] = CStringGetTextDatum(a->service_key);
	run(&q_load_state, values, NULL, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		text	   *key = DatumGetTextPP(SPI_getbinval(tuple, desc, 1, &isnull));
		bytea	   *value = DatumGetByteaPP(SPI_getbinval(tuple, desc, 2, &isnull));

		attempt_add_state_entry(a, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
								VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
	}
}

/*
 * Reads the journal through a cursor, a few entries at a time, so that a
 * journal too large to send is refused before it has all been read.
 */
static void
load_journal(Attempt *a, int64 max_bytes)
{
	Datum		values[1] = {CStringGetTextDatum(a->invocation_id)};
	Portal		portal;
	int64		total = 0;

	portal = SPI_cursor_open(NULL, plan_for(&q_load_journal), values, NULL, false);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 64);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			int32		type = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull));
			Datum		d = SPI_getbinval(tuple, desc, 2, &isnull);
			int64		len = toast_raw_datum_size(d) - VARHDRSZ;
			bytea	   *raw;

			total += PROTOCOL_FRAME_HEADER_SIZE + len;
			if (total > max_bytes)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("journal of " INT64_FORMAT " bytes (counted so far) exceeds durable.max_journal_size (" INT64_FORMAT " bytes)",
								total, max_bytes)));
			raw = DatumGetByteaPP(d);
			attempt_add_journal_entry(a, (uint16) type, VARDATA_ANY(raw),
									  VARSIZE_ANY_EXHDR(raw));
			/* A detoasted copy is not needed once framed into the request. */
			if ((Pointer) raw != DatumGetPointer(d))
				pfree(raw);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
}

void
store_load_attempt(Attempt *a, int64 max_bytes)
{
	load_state(a);
	load_journal(a, max_bytes);
}

int
store_release_orphans(int worker, int nworkers, List *live_ids)
{
	Datum		values[3];
	Datum	   *ids = palloc(sizeof(Datum) * Max(list_length(live_ids), 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, live_ids)
		ids[i++] = CStringGetTextDatum((char *) lfirst(lc));
	values[0] = Int32GetDatum(worker);
	values[1] = Int32GetDatum(nworkers);
	values[2] = PointerGetDatum(construct_array(ids, i, TEXTOID, -1, false, TYPALIGN_INT));
	run(&q_release_orphans, values, NULL, 0);
	return (int) SPI_processed;
}

List *
store_due_timers(int limit)
{
	Datum		values[1] = {Int32GetDatum(limit)};
	List	   *due = NIL;

	run(&q_due_timers, values, NULL, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		DueTimer   *t = palloc(sizeof(DueTimer));
		bool		isnull;

		t->invocation_id = get_text(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		t->completion_id = (uint32) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
																SPI_tuptable->tupdesc, 2,
																&isnull));
		due = lappend(due, t);
	}
	return due;
}

void
store_delete_timer(const DueTimer *t)
{
	Datum		values[2];

	values[0] = CStringGetTextDatum(t->invocation_id);
	values[1] = Int32GetDatum((int32) t->completion_id);
	run(&q_delete_timer, values, NULL, 0);
}

void
store_postpone_timer(const DueTimer *t, int ms)
{
	Datum		values[3];

	values[0] = CStringGetTextDatum(t->invocation_id);
	values[1] = Int32GetDatum((int32) t->completion_id);
	values[2] = Int32GetDatum(ms);
	run(&q_postpone_timer, values, NULL, 0);
}

bool
store_queue_signal(const OutgoingSignal *s)
{
	return store_queue_notification(s->invocation_id, MSG_SIGNAL_NOTIFICATION,
									s->signal_index, s->signal_name, 0, s->raw, s->len);
}

bool
store_queue_notification(const char *invocation_id, uint16 entry_type,
						 uint32 signal_index, const char *signal_name,
						 uint32 completion_id, const uint8 *raw, size_t len)
{
	Datum		values[6];
	char		nulls[6] = "      ";

	values[0] = CStringGetTextDatum(invocation_id);
	values[1] = Int32GetDatum((int32) entry_type);
	values[2] = Int32GetDatum((int32) signal_index);
	nulls[2] = signal_index != 0 ? ' ' : 'n';
	values[3] = text_datum_or_null(signal_name, &nulls[3]);
	values[4] = Int32GetDatum((int32) completion_id);
	nulls[4] = completion_id != 0 ? ' ' : 'n';
	values[5] = bytea_datum(raw, len);
	run(&q_queue_notification, values, nulls, 0);
	return SPI_processed == 1;
}

void
store_queue_kill(const char *invocation_id)
{
	Datum		values[1] = {CStringGetTextDatum(invocation_id)};

	run(&q_queue_kill, values, NULL, 0);
}

char *
store_create_invocation(const OutgoingCall *c, const char *parent_id, const char *root_id)
{
	Datum		values[10];
	char		nulls[10] = "          ";
	bool		isnull;

	values[0] = CStringGetTextDatum(c->service_name);
	values[1] = CStringGetTextDatum(c->handler_name);
	values[2] = bytea_datum(c->parameter, c->parameter_len);
	values[3] = CStringGetTextDatum(c->key);
	values[4] = text_datum_or_null(c->idempotency_key, &nulls[4]);
	values[5] = text_array_datum(c->n_headers, c->header_names);
	values[6] = text_array_datum(c->n_headers, c->header_values);
	values[7] = CStringGetTextDatum(parent_id);
	values[8] = CStringGetTextDatum(root_id);
	values[9] = TimestampTzGetDatum(c->invoke_at);
	nulls[9] = c->invoke_at != 0 ? ' ' : 'n';
	run(&q_create_invocation, values, nulls, 1);
	return TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
}

InvocationResult
store_invocation_result(const char *invocation_id)
{
	Datum		values[1] = {CStringGetTextDatum(invocation_id)};
	InvocationResult r = {0};
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	run(&q_invocation_result, values, NULL, 1);
	if (SPI_processed == 0)
		return r;
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	r.found = true;
	r.completed = DatumGetBool(SPI_getbinval(tuple, desc, 1, &isnull));
	d = SPI_getbinval(tuple, desc, 2, &isnull);
	r.failed = !isnull && DatumGetBool(d);
	d = SPI_getbinval(tuple, desc, 3, &isnull);
	if (!isnull)
		r.output = DatumGetByteaPCopy(d);
	d = SPI_getbinval(tuple, desc, 4, &isnull);
	r.failure_code = isnull ? FAILURE_INTERNAL : DatumGetInt32(d);
	r.failure_message = get_text(tuple, desc, 5);
	r.failure_metadata.n = text_array_items(get_array(tuple, desc, 6), &r.failure_metadata.keys);
	(void) text_array_items(get_array(tuple, desc, 7), &r.failure_metadata.values);
	return r;
}

char *
store_find_invocation(const char *service, const char *key, const char *handler,
					  const char *idempotency_key)
{
	Datum		values[4];
	char		nulls[4] = "    ";

	values[0] = CStringGetTextDatum(service);
	values[1] = text_datum_or_null(key, &nulls[1]);
	if (handler == NULL)
		run(&q_find_workflow, values, nulls, 1);
	else
	{
		values[2] = CStringGetTextDatum(handler);
		values[3] = CStringGetTextDatum(idempotency_key);
		run(&q_find_by_idempotency_key, values, nulls, 1);
	}
	return get_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

void
store_add_invocation_waiter(const char *invocation_id, const char *waiter_id,
							uint32 completion_id, uint16 entry_type)
{
	Datum		values[4];

	values[0] = CStringGetTextDatum(invocation_id);
	values[1] = CStringGetTextDatum(waiter_id);
	values[2] = Int32GetDatum((int32) completion_id);
	values[3] = Int32GetDatum((int32) entry_type);
	run(&q_add_invocation_waiter, values, NULL, 0);
}

static List *
waiters_from_result(bool with_type)
{
	List	   *waiters = NIL;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Waiter	   *w = palloc0(sizeof(Waiter));
		bool		isnull;

		w->invocation_id = get_text(tuple, desc, 1);
		w->completion_id = (uint32) DatumGetInt32(SPI_getbinval(tuple, desc, 2, &isnull));
		if (with_type)
			w->entry_type = (uint16) DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull));
		waiters = lappend(waiters, w);
	}
	return waiters;
}

List *
store_take_invocation_waiters(const char *invocation_id)
{
	Datum		values[1] = {CStringGetTextDatum(invocation_id)};

	run(&q_take_invocation_waiters, values, NULL, 0);
	return waiters_from_result(true);
}

List *
store_take_waits_of(const char *waiter_id)
{
	Datum		values[1] = {CStringGetTextDatum(waiter_id)};
	List	   *waits = NIL;

	run(&q_take_waits_of, values, NULL, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Waiter	   *w = palloc0(sizeof(Waiter));
		bool		isnull;

		w->invocation_id = get_text(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		w->entry_type = (uint16) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
															 SPI_tuptable->tupdesc, 2,
															 &isnull));
		w->started_by_waiter = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 3,
														  &isnull));
		waits = lappend(waits, w);
	}
	return waits;
}

PromiseRow
store_lock_promise(const char *service, const char *key, const char *name)
{
	Datum		values[3];
	PromiseRow	p = {0};
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	values[0] = CStringGetTextDatum(service);
	values[1] = CStringGetTextDatum(key);
	values[2] = CStringGetTextDatum(name);
	run(&q_lock_promise, values, NULL, 0);
	run(&q_read_promise, values, NULL, 1);
	if (SPI_processed != 1)
		elog(ERROR, "promise \"%s\" of %s/%s vanished", name, service, key);
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	p.completed = DatumGetBool(SPI_getbinval(tuple, desc, 1, &isnull));
	if (!p.completed)
		return p;
	if (DatumGetBool(SPI_getbinval(tuple, desc, 2, &isnull)))
	{
		p.result.kind = RESULT_FAILURE;
		p.result.failure_code = (uint32) DatumGetInt32(SPI_getbinval(tuple, desc, 4, &isnull));
		p.result.failure_message = get_text(tuple, desc, 5);
	}
	else
	{
		bytea	   *v;

		d = SPI_getbinval(tuple, desc, 3, &isnull);
		v = isnull ? NULL : DatumGetByteaPCopy(d);
		p.result.kind = RESULT_VALUE;
		p.result.value = v ? (const uint8 *) VARDATA(v) : (const uint8 *) "";
		p.result.value_len = v ? VARSIZE(v) - VARHDRSZ : 0;
	}
	return p;
}

void
store_complete_promise(const char *service, const char *key, const char *name,
					   const NotificationResult *result)
{
	Datum		values[6];
	char		nulls[6] = "      ";

	values[0] = CStringGetTextDatum(service);
	values[1] = CStringGetTextDatum(key);
	values[2] = CStringGetTextDatum(name);
	if (result->kind == RESULT_FAILURE)
	{
		nulls[3] = 'n';
		values[4] = Int32GetDatum((int32) result->failure_code);
		values[5] = text_datum_or_null(result->failure_message ? result->failure_message : "",
									   &nulls[5]);
	}
	else
	{
		values[3] = bytea_datum(result->value, result->kind == RESULT_VALUE ? result->value_len : 0);
		nulls[4] = nulls[5] = 'n';
	}
	run(&q_complete_promise, values, nulls, 0);
}

void
store_add_promise_waiter(const char *service, const char *key, const char *name,
						 const char *waiter_id, uint32 completion_id)
{
	Datum		values[5];

	values[0] = CStringGetTextDatum(service);
	values[1] = CStringGetTextDatum(key);
	values[2] = CStringGetTextDatum(name);
	values[3] = CStringGetTextDatum(waiter_id);
	values[4] = Int32GetDatum((int32) completion_id);
	run(&q_add_promise_waiter, values, NULL, 0);
}

List *
store_take_promise_waiters(const char *service, const char *key, const char *name)
{
	Datum		values[3];

	values[0] = CStringGetTextDatum(service);
	values[1] = CStringGetTextDatum(key);
	values[2] = CStringGetTextDatum(name);
	run(&q_take_promise_waiters, values, NULL, 0);
	return waiters_from_result(false);
}

List *
store_due_signals(int limit)
{
	Datum		values[1] = {Int32GetDatum(limit)};
	List	   *due = NIL;

	run(&q_due_signals, values, NULL, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		QueuedNotification *s = palloc0(sizeof(QueuedNotification));
		bool		isnull;
		Datum		d;

		s->id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		s->invocation_id = get_text(tuple, desc, 2);
		d = SPI_getbinval(tuple, desc, 3, &isnull);
		s->signal_index = isnull ? 0 : (uint32) DatumGetInt32(d);
		s->signal_name = get_text(tuple, desc, 4);
		d = SPI_getbinval(tuple, desc, 5, &isnull);
		s->raw = isnull ? NULL : DatumGetByteaPCopy(d);
		s->action = get_text(tuple, desc, 6);
		d = SPI_getbinval(tuple, desc, 7, &isnull);
		s->entry_type = isnull ? 0 : (uint16) DatumGetInt32(d);
		d = SPI_getbinval(tuple, desc, 8, &isnull);
		s->completion_id = isnull ? 0 : (uint32) DatumGetInt32(d);
		s->service_name = get_text(tuple, desc, 9);
		s->service_key = get_text(tuple, desc, 10);
		s->promise_name = get_text(tuple, desc, 11);
		due = lappend(due, s);
	}
	return due;
}

void
store_delete_signal(int64 id)
{
	Datum		values[1] = {Int64GetDatum(id)};

	run(&q_delete_signal, values, NULL, 0);
}

void
store_postpone_signal(int64 id, int ms)
{
	Datum		values[2] = {Int64GetDatum(id), Int32GetDatum(ms)};

	run(&q_postpone_signal, values, NULL, 0);
}

TimestampTz
store_next_wakeup(void)
{
	bool		isnull;
	Datum		d;

	run(&q_next_wakeup, NULL, NULL, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(d);
}

int
store_expire_idempotency_keys(int limit)
{
	Datum		values[1] = {Int32GetDatum(limit)};

	run(&q_expire_idempotency_keys, values, NULL, 0);
	return (int) SPI_processed;
}

int
store_expire_workflows(int limit)
{
	Datum		values[1] = {Int32GetDatum(limit)};
	bool		isnull;

	run(&q_expire_workflows, values, NULL, 1);
	return (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
}
