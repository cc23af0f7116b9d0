/*-------------------------------------------------------------------------
 *
 * sql_api.c
 *	  SQL-callable functions of the public API that need C: waiting for
 *	  results (durable.await, durable.output) and the small helpers the SQL
 *	  parts of the API are built on.  durable.call is in call.c.
 *
 * IDENTIFICATION
 *	  src/sql_api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "durable.h"
#include "invocation_id.h"
#include "protocol.h"
#include "protocol.pb-c.h"
#include "shared_state.h"

/*
 * SQLSTATE of an await that timed out.  Not query_canceled (57014): PL/pgSQL
 * "WHEN OTHERS" does not catch that one, and callers must be able to catch a
 * timeout and wait again.  Class "RD" is implementation-defined (it starts
 * with a letter from I to Z, outside the classes reserved for the SQL
 * standard) and unused by PostgreSQL.
 */
#define ERRCODE_DURABLE_AWAIT_TIMEOUT MAKE_SQLSTATE('R','D','0','0','1')

/* An await longer than this (about 292,000 years) waits forever. */
#define AWAIT_FOREVER PG_INT64_MAX

PG_FUNCTION_INFO_V1(durable_input_entry);
PG_FUNCTION_INFO_V1(durable_entry_type_name);
PG_FUNCTION_INFO_V1(durable_entry_kind);
PG_FUNCTION_INFO_V1(durable_entry_type);
PG_FUNCTION_INFO_V1(durable_wake_at_commit);
PG_FUNCTION_INFO_V1(durable_output);
PG_FUNCTION_INFO_V1(durable_await);

/*
 * durable._input_entry(input bytea, header_names text[], header_values text[])
 *
 * Encodes the Input command that is journal entry 0 of every invocation.
 */
Datum
durable_input_entry(PG_FUNCTION_ARGS)
{
	Wire__InputCommandMessage msg = WIRE__INPUT_COMMAND_MESSAGE__INIT;
	Wire__Value value = WIRE__VALUE__INIT;
	Wire__Header **headers = NULL;
	int			nheaders = 0;
	size_t		len;
	bytea	   *result;

	if (!PG_ARGISNULL(0))
	{
		bytea	   *input = PG_GETARG_BYTEA_PP(0);

		value.content.data = (uint8 *) VARDATA_ANY(input);
		value.content.len = VARSIZE_ANY_EXHDR(input);
	}
	/* The SDK expects a value even for an empty input. */
	msg.value = &value;

	if (!PG_ARGISNULL(1) && !PG_ARGISNULL(2))
	{
		Datum	   *names;
		Datum	   *values;
		bool	   *nnulls;
		bool	   *vnulls;
		int			nn;
		int			nv;

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
						  &names, &nnulls, &nn);
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), TEXTOID, -1, false, TYPALIGN_INT,
						  &values, &vnulls, &nv);
		if (nn != nv)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("header names and values differ in number")));
		headers = palloc(sizeof(Wire__Header *) * Max(nn, 1));
		for (int i = 0; i < nn; i++)
		{
			if (nnulls[i] || vnulls[i])
				continue;
			headers[nheaders] = palloc(sizeof(Wire__Header));
			wire__header__init(headers[nheaders]);
			headers[nheaders]->key = TextDatumGetCString(names[i]);
			headers[nheaders]->value = TextDatumGetCString(values[i]);
			nheaders++;
		}
	}
	msg.n_headers = nheaders;
	msg.headers = headers;

	len = wire__input_command_message__get_packed_size(&msg);
	result = palloc(VARHDRSZ + len);
	SET_VARSIZE(result, VARHDRSZ + len);
	wire__input_command_message__pack(&msg, (uint8 *) VARDATA(result));
	PG_RETURN_BYTEA_P(result);
}

Datum
durable_entry_type_name(PG_FUNCTION_ARGS)
{
	int32		type = PG_GETARG_INT32(0);

	if (type < 0 || type > 0xFFFF)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(protocol_message_name((uint16) type)));
}

Datum
durable_entry_kind(PG_FUNCTION_ARGS)
{
	int32		type = PG_GETARG_INT32(0);

	if (type < 0 || type > 0xFFFF)
		PG_RETURN_NULL();
	if (MSG_IS_NOTIFICATION(type))
		PG_RETURN_TEXT_P(cstring_to_text("notification"));
	if (MSG_IS_COMMAND(type))
		PG_RETURN_TEXT_P(cstring_to_text("command"));
	PG_RETURN_TEXT_P(cstring_to_text("control"));
}

Datum
durable_entry_type(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			type = protocol_message_type(name);

	if (type < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown journal entry type \"%s\"", name),
				 errhint("Use a name that durable.entry_type_name() returns, such as 'Run' or 'Input'.")));
	PG_RETURN_INT32(type);
}

Datum
durable_wake_at_commit(PG_FUNCTION_ARGS)
{
	shared_state_wake_dispatchers_at_commit();
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------------
 * Reading results
 * ----------------------------------------------------------------------
 */

typedef struct InvocationResult
{
	bool		found;
	char	   *status;
	bool		completed;
	bool		failed;
	bytea	   *output;			/* NULL if none */
	int			failure_code;
	char	   *failure_message;
	bool		uncommitted;	/* created or changed by this transaction */
} InvocationResult;

static void
validate_id(const char *id)
{
	uint8		raw[INVOCATION_ID_RAW_LEN];

	invocation_id_parse_or_error(id, raw);
}

/*
 * Reads an invocation's status and result.  With latest = true it looks
 * through a fresh snapshot, so results committed after this transaction
 * started are seen even under REPEATABLE READ.
 *
 * The read runs in a subtransaction that is rolled back at once: that
 * releases the locks it took (durable.await reads again and again, and must
 * not keep DROP EXTENSION, and everything queued behind it, waiting), and the
 * snapshot it used is gone when it returns.  The result is copied into the
 * caller's memory context.
 */
static InvocationResult
read_result(const char *id, bool latest)
{
	static const char *sql =
		"SELECT status, completion_result, output, completion_failure_code, "
		"completion_failure, xmin FROM durable.invocation "
		"WHERE id OPERATOR(pg_catalog.=) $1";
	/* Planned once per backend: durable.await runs it at every wake-up. */
	static SPIPlanPtr plan = NULL;
	InvocationResult r = {0};
	Datum		values[1];
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	values[0] = CStringGetTextDatum(id);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		int			rc;

		SPI_connect();
		if (plan == NULL)
		{
			Oid			types[1] = {TEXTOID};
			SPIPlanPtr	p = SPI_prepare(sql, 1, types);

			if (p == NULL)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			SPI_keepplan(p);
			plan = p;
		}
		if (latest)
			rc = SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
									  InvalidSnapshot, true, false, 1);
		else
			/* read_only = false: a fresh snapshot that includes our own writes */
			rc = SPI_execute_plan(plan, values, NULL, false, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "reading invocation failed: %s", SPI_result_code_string(rc));

		if (SPI_processed > 0)
		{
			HeapTuple	tuple = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum		d;
			MemoryContext spi = MemoryContextSwitchTo(caller);

			r.found = true;
			r.status = TextDatumGetCString(SPI_getbinval(tuple, desc, 1, &isnull));
			r.completed = strcmp(r.status, STATUS_COMPLETED) == 0;
			d = SPI_getbinval(tuple, desc, 2, &isnull);
			r.failed = !isnull && strcmp(TextDatumGetCString(d), "failure") == 0;
			d = SPI_getbinval(tuple, desc, 3, &isnull);
			r.output = isnull ? NULL : DatumGetByteaPCopy(d);
			d = SPI_getbinval(tuple, desc, 4, &isnull);
			r.failure_code = isnull ? 0 : DatumGetInt32(d);
			d = SPI_getbinval(tuple, desc, 5, &isnull);
			r.failure_message = isnull ? pstrdup("") : TextDatumGetCString(d);
			d = SPI_getbinval(tuple, desc, 6, &isnull);
			r.uncommitted = TransactionIdIsCurrentTransactionId(DatumGetTransactionId(d));
			MemoryContextSwitchTo(spi);
		}
		SPI_finish();

		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;

		/*
		 * DROP EXTENSION while we wait: the plan no longer finds its table.
		 * Say what happened rather than which relation is missing.
		 */
		if (!OidIsValid(get_extension_oid("durable", true)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("extension \"durable\" was dropped while reading invocation \"%s\"", id),
					 errdetail("The invocation and its result were dropped with the extension.")));
		ReThrowError(edata);
	}
	PG_END_TRY();

	/* Nothing of the read may keep this backend's xmin back. */
	InvalidateCatalogSnapshot();
	return r;
}

static void
raise_not_found(const char *id)
{
	InvocationResult own = read_result(id, false);

	if (own.found && own.uncommitted)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invocation \"%s\" is not committed yet", id),
				 errdetail("It was created by the current transaction and runs only after that transaction commits."),
				 errhint("Commit first, then wait for it with durable.await().")));
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("invocation \"%s\" not found", id)));
}

/*
 * Output bytes as jsonb; errors out if the handler's output is not JSON.
 *
 * The bytes come from the service and are supposed to be UTF-8 JSON, but
 * nothing guarantees it.  jsonb_in does not check the encoding of the bytes
 * inside strings, and a jsonb holding invalid UTF-8 could be stored in a
 * user's table and then break the restore of a dump, so validate first.
 */
static Datum
output_to_jsonb(const char *id, bytea *output, bool *isnull)
{
	const char *data;
	int			len;
	char	   *json;

	*isnull = (output == NULL || VARSIZE_ANY_EXHDR(output) == 0);
	if (*isnull)
		return (Datum) 0;
	data = VARDATA_ANY(output);
	len = VARSIZE_ANY_EXHDR(output);
	if (!pg_verify_mbstr(PG_UTF8, data, len, true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("output of invocation \"%s\" is not valid UTF-8", id),
				 errdetail("The service returned %d bytes that are not a valid UTF-8 encoding (or contain a zero byte).", len),
				 errhint("Read the raw bytes from the output_raw column of durable.invocations.")));
	/* UTF-8 to the database encoding; the bytes are not NUL-terminated */
	json = pg_any_to_server(pnstrdup(data, len), len, PG_UTF8);
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
}

static void
raise_failure(const char *id, const InvocationResult *r)
{
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("invocation \"%s\" failed: %s", id, r->failure_message),
			 errdetail("The handler ended with failure code %d.", r->failure_code)));
}

Datum
durable_output(PG_FUNCTION_ARGS)
{
	char	   *id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	InvocationResult r;
	bool		isnull;
	Datum		d;

	validate_id(id);
	r = read_result(id, true);
	if (!r.found || (r.uncommitted && !r.completed))
		raise_not_found(id);
	if (!r.completed)
		PG_RETURN_NULL();
	if (r.failed)
		raise_failure(id, &r);
	d = output_to_jsonb(id, r.output, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(d);
}

/*
 * A timeout interval in microseconds, a month counting as 30 days.  Too long
 * to count in microseconds means forever (AWAIT_FOREVER); negative is an
 * error.  Every step is checked for overflow: '1000000 years' must not wrap
 * around to a negative number.
 */
static int64
interval_to_timeout_us(Interval *timeout)
{
	int64		month_us;
	int64		day_us;
	int64		total;

	if (!pg_mul_s64_overflow((int64) timeout->month, 30 * USECS_PER_DAY, &month_us) &&
		!pg_mul_s64_overflow((int64) timeout->day, USECS_PER_DAY, &day_us) &&
		!pg_add_s64_overflow(month_us, day_us, &total) &&
		!pg_add_s64_overflow(total, timeout->time, &total))
	{
		if (total < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout must not be negative")));
		return total;
	}

	/*
	 * Out of the int64 range: at least 2^63 microseconds one way or the
	 * other, so the floating-point sum has the right sign.
	 */
	if ((double) timeout->month * 30 * USECS_PER_DAY +
		(double) timeout->day * USECS_PER_DAY + (double) timeout->time < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	return AWAIT_FOREVER;
}

/*
 * Waits until the invocation is completed, then returns its output.
 *
 * Between looks at the invocation this backend holds no lock and no snapshot
 * of its own (see read_result); it sleeps on its latch, which the dispatcher
 * that completes the invocation sets (shared_state_announce_completion).
 * The sleep is bounded by a second anyway, so a missed wake-up costs at most
 * that.  The snapshot of the statement that called us is the caller's and
 * stays: see "durable.await" in docs/sql-api.md.
 */
static Datum
await_result(const char *id, Interval *timeout, bool *isnull)
{
	int64		timeout_us;
	TimestampTz start;
	TimestampTz deadline;
	InvocationResult r;

	validate_id(id);
	timeout_us = interval_to_timeout_us(timeout);
	start = GetCurrentTimestamp();
	if (pg_add_s64_overflow(start, timeout_us, &deadline))
		deadline = AWAIT_FOREVER;

	PG_TRY();
	{
		for (;;)
		{
			TimestampTz now;
			long		sleep_ms;
			bool		registered;

			/*
			 * Register (and reset the latch) before looking, so that a
			 * completion committed after the look still wakes us.
			 */
			registered = shared_state_wait_for_completion(id);
			ResetLatch(MyLatch);
			r = read_result(id, true);
			if (!r.found || r.completed || r.uncommitted)
				break;

			now = GetCurrentTimestamp();
			if (now >= deadline)
				break;
			/* without shared memory nobody wakes us: poll */
			sleep_ms = registered ? 1000L : 100L;
			if (deadline - now < sleep_ms * 1000L)
				sleep_ms = (long) ((deadline - now + 999) / 1000);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_FINALLY();
	{
		shared_state_stop_waiting();
	}
	PG_END_TRY();

	if (!r.found || (r.uncommitted && !r.completed))
		raise_not_found(id);
	if (!r.completed)
		ereport(ERROR,
				(errcode(ERRCODE_DURABLE_AWAIT_TIMEOUT),
				 errmsg("timed out waiting for invocation \"%s\"", id),
				 strcmp(r.status, "paused") == 0 ?
				 errdetail("The invocation is paused: it failed durable.retry_max_attempts times in a row and is not retried any more.") :
				 errdetail("The invocation is %s; it goes on running.", r.status),
				 errhint("Wait again with durable.await(), or read it later with durable.output().")));
	if (r.failed)
		raise_failure(id, &r);
	return output_to_jsonb(id, r.output, isnull);
}

Datum
durable_await(PG_FUNCTION_ARGS)
{
	char	   *id;
	bool		isnull;
	Datum		d;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("invocation id must not be NULL")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("timeout must not be NULL")));
	id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	d = await_result(id, PG_GETARG_INTERVAL_P(1), &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(d);
}
