/*-------------------------------------------------------------------------
 *
 * journal_store.c
 *	  The dispatchers' access to durable's tables: claiming invocations,
 *	  loading and appending journals, state, timers and attempt outcomes.
 *
 * Each statement is prepared once per process and kept (SPI_keepplan).
 * The lifecycle rules themselves live in the SQL functions of the
 * extension script (durable._claim, durable._append_entry, ...), so that
 * SQL-level features and the dispatchers share one implementation.
 *
 * IDENTIFICATION
 *	  src/journal_store.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "durable.h"
#include "journal_store.h"
#include "protocol.h"

typedef struct StoredQuery
{
	const char *sql;
	int			nargs;
	Oid			argtypes[10];
	SPIPlanPtr	plan;
} StoredQuery;

static StoredQuery q_recover = {
	"SELECT durable._recover($1, $2)", 2, {INT4OID, INT4OID}
};
static StoredQuery q_claim = {
	"SELECT c.id, c.service_name, c.handler_name, c.service_key, c.uri, "
	"(SELECT string_agg(e.key || ': ' || e.value, chr(10)) "
	"        FROM jsonb_each_text(c.headers) e), "
	"c.http_version, c.protocol_version, c.random_seed, "
	"c.retry_count_since_last_stored_entry, c.ms_since_last_stored_entry, "
	"c.inactivity_timeout_ms, c.abort_timeout_ms FROM durable._claim($1, $2) c",
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
static StoredQuery q_append = {
	"SELECT durable._append_entry($1, $2, $3, $4, $5, $6, $7)",
	7, {TEXTOID, INT4OID, TEXTOID, INT4OID, INT4OID, TEXTOID, BYTEAOID}
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
static StoredQuery q_get_state = {
	"SELECT value FROM durable.state_entry "
	"WHERE service_name = $1 AND service_key = $2 AND key = $3",
	3, {TEXTOID, TEXTOID, TEXTOID}
};
static StoredQuery q_state_keys = {
	"SELECT key FROM durable.state_entry "
	"WHERE service_name = $1 AND service_key = $2 ORDER BY key",
	2, {TEXTOID, TEXTOID}
};
static StoredQuery q_add_timer = {
	"INSERT INTO durable.timer (invocation_id, completion_id, wake_at) "
	"VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
	3, {TEXTOID, INT4OID, TIMESTAMPTZOID}
};
static StoredQuery q_suspend = {
	"SELECT durable._suspend($1, $2, $3, $4)",
	4, {TEXTOID, INT4ARRAYOID, INT4ARRAYOID, TEXTARRAYOID}
};
static StoredQuery q_complete = {
	"SELECT durable._complete($1, $2, $3, $4)",
	4, {TEXTOID, BYTEAOID, INT4OID, TEXTOID}
};
static StoredQuery q_attempt_failed = {
	"SELECT durable._attempt_failed($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
	10, {TEXTOID, INT4OID, TEXTOID, INT8OID, INT8OID, INT8OID, FLOAT8OID,
	INT4OID, TEXTOID, BOOLOID}
};
static StoredQuery q_due_timers = {
	"SELECT invocation_id, completion_id FROM durable._take_due_timers($1)",
	1, {INT4OID}
};
static StoredQuery q_next_wakeup = {
	"SELECT durable._next_wakeup()", 0, {}
};

static SPIPlanPtr
plan_for(StoredQuery *q)
{
	if (q->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(q->sql, q->nargs, q->argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 q->sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		q->plan = plan;
	}
	return q->plan;
}

/*
 * Every statement runs with read_only = false: that makes SPI take a fresh
 * snapshot after a CommandCounterIncrement, so a read sees what earlier
 * statements of the same dispatcher transaction wrote (the journal
 * entries an attempt just appended, for instance).
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

/* State keys are strings in every SDK; refuse bytes that are not text. */
static Datum
state_key_datum(const uint8 *key, size_t keylen)
{
	char	   *s = palloc(keylen + 1);

	memcpy(s, key, keylen);
	s[keylen] = '\0';
	if (strlen(s) != keylen || !pg_verifymbstr(s, keylen, true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("state key is not valid text")));
	return CStringGetTextDatum(s);
}

static char *
get_text(HeapTuple tuple, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

bool
store_extension_ready(void)
{
	return OidIsValid(get_extension_oid("durable", true));
}

int
store_recover(int worker, int nworkers)
{
	Datum		values[2] = {Int32GetDatum(worker), Int32GetDatum(nworkers)};
	bool		isnull;

	run(&q_recover, values, NULL, 1);
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

static void
load_journal(Attempt *a)
{
	Datum		values[1] = {CStringGetTextDatum(a->invocation_id)};

	run(&q_load_journal, values, NULL, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int32		type = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull));
		bytea	   *raw = DatumGetByteaPP(SPI_getbinval(tuple, desc, 2, &isnull));

		attempt_add_journal_entry(a, (uint16) type, VARDATA_ANY(raw),
								  VARSIZE_ANY_EXHDR(raw));
	}
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

List *
store_claim(int worker, int limit, MemoryContext attempt_parent,
			MemoryContext list_cxt)
{
	Datum		values[2] = {Int32GetDatum(worker), Int32GetDatum(limit)};
	SPITupleTable *claimed;
	uint64		nclaimed;
	List	   *attempts = NIL;
	ListCell   *lc;

	run(&q_claim, values, NULL, 0);
	claimed = SPI_tuptable;
	nclaimed = SPI_processed;

	for (uint64 i = 0; i < nclaimed; i++)
	{
		HeapTuple	tuple = claimed->vals[i];
		TupleDesc	desc = claimed->tupdesc;
		Attempt    *a = attempt_create(attempt_parent);
		MemoryContext old = MemoryContextSwitchTo(a->cxt);
		bool		isnull;
		Datum		d;

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
		d = SPI_getbinval(tuple, desc, 12, &isnull);
		a->inactivity_timeout_ms = isnull ? durable_inactivity_timeout_ms : DatumGetInt64(d);
		d = SPI_getbinval(tuple, desc, 13, &isnull);
		a->abort_timeout_ms = isnull ? durable_abort_timeout_ms : DatumGetInt64(d);
		/* The list must outlive SPI_finish; the attempts live on their own. */
		MemoryContextSwitchTo(list_cxt);
		attempts = lappend(attempts, a);
		MemoryContextSwitchTo(old);
	}

	/* Loading runs further queries, which replace SPI_tuptable. */
	foreach(lc, attempts)
	{
		Attempt    *a = (Attempt *) lfirst(lc);

		if (a->uri != NULL)
		{
			load_state(a);
			load_journal(a);
		}
	}
	return attempts;
}

int
store_append_entry(const char *invocation_id, uint16 type, const char *name,
				   int completion_id, int signal_id, const char *signal_name,
				   const uint8 *raw, size_t rawlen)
{
	Datum		values[7];
	char		nulls[7] = "       ";
	bool		isnull;

	values[0] = CStringGetTextDatum(invocation_id);
	values[1] = Int32GetDatum((int32) type);
	values[2] = text_datum_or_null(name && name[0] ? name : NULL, &nulls[2]);
	values[3] = Int32GetDatum(completion_id);
	nulls[3] = completion_id > 0 ? ' ' : 'n';
	values[4] = Int32GetDatum(signal_id);
	nulls[4] = signal_id > 0 ? ' ' : 'n';
	values[5] = text_datum_or_null(signal_name, &nulls[5]);
	values[6] = bytea_datum(raw, rawlen);
	run(&q_append, values, nulls, 1);
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

static void
require_key(Attempt *a)
{
	if (a->service_key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("service \"%s\" is not keyed and has no state",
						a->service_name)));
}

void
store_set_state(Attempt *a, const uint8 *key, size_t keylen,
				const uint8 *value, size_t valuelen)
{
	Datum		values[4];

	require_key(a);
	values[0] = CStringGetTextDatum(a->service_name);
	values[1] = CStringGetTextDatum(a->service_key);
	values[2] = state_key_datum(key, keylen);
	values[3] = bytea_datum(value, valuelen);
	run(&q_set_state, values, NULL, 0);
}

void
store_clear_state(Attempt *a, const uint8 *key, size_t keylen)
{
	Datum		values[3];

	require_key(a);
	values[0] = CStringGetTextDatum(a->service_name);
	values[1] = CStringGetTextDatum(a->service_key);
	values[2] = state_key_datum(key, keylen);
	run(&q_clear_state, values, NULL, 0);
}

void
store_clear_all_state(Attempt *a)
{
	Datum		values[2];

	require_key(a);
	values[0] = CStringGetTextDatum(a->service_name);
	values[1] = CStringGetTextDatum(a->service_key);
	run(&q_clear_all_state, values, NULL, 0);
}

bool
store_get_state(Attempt *a, const uint8 *key, size_t keylen, StringInfo value)
{
	Datum		values[3];
	bool		isnull;
	bytea	   *b;

	require_key(a);
	values[0] = CStringGetTextDatum(a->service_name);
	values[1] = CStringGetTextDatum(a->service_key);
	values[2] = state_key_datum(key, keylen);
	run(&q_get_state, values, NULL, 1);
	if (SPI_processed == 0)
		return false;
	b = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
	appendBinaryStringInfo(value, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
	return true;
}

List *
store_state_keys(Attempt *a)
{
	Datum		values[2];
	List	   *keys = NIL;

	require_key(a);
	values[0] = CStringGetTextDatum(a->service_name);
	values[1] = CStringGetTextDatum(a->service_key);
	run(&q_state_keys, values, NULL, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
		keys = lappend(keys, get_text(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	return keys;
}

void
store_add_timer(const char *invocation_id, int completion_id, TimestampTz wake_at)
{
	Datum		values[3];

	values[0] = CStringGetTextDatum(invocation_id);
	values[1] = Int32GetDatum(completion_id);
	values[2] = TimestampTzGetDatum(wake_at);
	run(&q_add_timer, values, NULL, 0);
}

static Datum
int4_array_datum(int n, uint32 *items)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = Int32GetDatum((int32) items[i]);
	return PointerGetDatum(construct_array(elems, n, INT4OID, 4, true, TYPALIGN_INT));
}

bool
store_suspend(const char *invocation_id, int ncompletions, uint32 *completions,
			  int nsignals, uint32 *signals, int nnamed, char **named)
{
	Datum		values[4];
	Datum	   *names = palloc(sizeof(Datum) * Max(nnamed, 1));
	bool		isnull;
	char	   *status;

	for (int i = 0; i < nnamed; i++)
		names[i] = CStringGetTextDatum(named[i]);
	values[0] = CStringGetTextDatum(invocation_id);
	values[1] = int4_array_datum(ncompletions, completions);
	values[2] = int4_array_datum(nsignals, signals);
	values[3] = PointerGetDatum(construct_array(names, nnamed, TEXTOID, -1, false, TYPALIGN_INT));
	run(&q_suspend, values, NULL, 1);
	status = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	return strcmp(status, "ready") == 0;
}

void
store_complete(const char *invocation_id, const uint8 *output, size_t outlen,
			   bool failed, int failure_code, const char *failure_message)
{
	Datum		values[4];
	char		nulls[4] = "    ";

	values[0] = CStringGetTextDatum(invocation_id);
	if (failed || output == NULL)
		nulls[1] = 'n';
	else
		values[1] = bytea_datum(output, outlen);
	values[2] = Int32GetDatum(failure_code);
	nulls[2] = failed ? ' ' : 'n';
	values[3] = text_datum_or_null(failed ? failure_message : NULL, &nulls[3]);
	run(&q_complete, values, nulls, 0);
}

char *
store_attempt_failed(const char *invocation_id, int code, const char *message,
					 int64 retry_delay_ms, bool pause)
{
	Datum		values[10];
	char		nulls[10] = "          ";
	bool		isnull;
	Datum		d;

	values[0] = CStringGetTextDatum(invocation_id);
	values[1] = Int32GetDatum(code);
	values[2] = CStringGetTextDatum(message);
	values[3] = Int64GetDatum(retry_delay_ms);
	nulls[3] = retry_delay_ms >= 0 ? ' ' : 'n';
	values[4] = Int64GetDatum((int64) durable_retry_initial_interval_ms);
	values[5] = Int64GetDatum((int64) durable_retry_max_interval_ms);
	values[6] = Float8GetDatum(durable_retry_exponentiation_factor);
	values[7] = Int32GetDatum(durable_retry_max_attempts);
	values[8] = CStringGetTextDatum(durable_retry_on_max_attempts == RETRY_EXHAUSTED_KILL
									? "kill" : "pause");
	values[9] = BoolGetDatum(pause);
	run(&q_attempt_failed, values, nulls, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? NULL : TextDatumGetCString(d);
}

List *
store_take_due_timers(int limit)
{
	Datum		values[1] = {Int32GetDatum(limit)};
	List	   *due = NIL;

	run(&q_due_timers, values, NULL, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		DueTimer   *t = palloc(sizeof(DueTimer));
		bool		isnull;

		t->invocation_id = get_text(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		t->completion_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 2, &isnull));
		due = lappend(due, t);
	}
	return due;
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
