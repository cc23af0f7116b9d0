/*-------------------------------------------------------------------------
 *
 * sql_api.c
 *	  SQL-callable functions of the public API that need C: waiting for
 *	  results (durable.await, durable.call, durable.output) and the small
 *	  helpers the SQL parts of the API are built on.
 *
 * IDENTIFICATION
 *	  src/sql_api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "durable.h"
#include "invocation_id.h"
#include "protocol.h"
#include "protocol.pb-c.h"
#include "shared_state.h"
#include "submitter.h"
#include "utf8.h"

/*
 * SQLSTATE of an await that timed out.  Not query_canceled (57014): PL/pgSQL
 * "WHEN OTHERS" does not catch that one, and callers must be able to catch a
 * timeout and wait again.
 */
#define ERRCODE_DURABLE_AWAIT_TIMEOUT MAKE_SQLSTATE('D','R','0','0','1')

PG_FUNCTION_INFO_V1(durable_input_entry);
PG_FUNCTION_INFO_V1(durable_entry_type_name);
PG_FUNCTION_INFO_V1(durable_wake_at_commit);
PG_FUNCTION_INFO_V1(durable_output);
PG_FUNCTION_INFO_V1(durable_await);
PG_FUNCTION_INFO_V1(durable_call);

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

	if (!invocation_id_parse(id, raw))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid invocation id \"%s\"", id),
				 errdetail("An invocation id is \"inv_1\" followed by 33 base62 characters.")));
}

/*
 * Reads an invocation's status and result.  With latest = true it looks
 * through a fresh snapshot, so results committed after this transaction
 * started are seen even under REPEATABLE READ.
 */
static InvocationResult
read_result(const char *id, bool latest)
{
	static const char *sql =
		"SELECT status, completion_result, output, completion_failure_code, "
		"completion_failure, xmin FROM durable.invocation WHERE id = $1";
	/* Planned once per backend: durable.await runs it at every wake-up. */
	static SPIPlanPtr plan = NULL;
	InvocationResult r = {0};
	Datum		values[1] = {CStringGetTextDatum(id)};
	int			rc;
	MemoryContext caller = CurrentMemoryContext;

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
		r.completed = strcmp(r.status, "completed") == 0;
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

/* Output bytes as jsonb; errors out if the handler's output is not JSON. */
static Datum
output_to_jsonb(const char *id, bytea *output, bool *isnull)
{
	char	   *json;

	*isnull = (output == NULL || VARSIZE_ANY_EXHDR(output) == 0);
	if (*isnull)
		return (Datum) 0;
	/*
	 * jsonb_in does not check the encoding, and a service may have sent
	 * anything: invalid UTF-8 would make a table that saves this value
	 * impossible to restore from a dump.
	 */
	if (GetDatabaseEncoding() == PG_UTF8)
		json = utf8_make_valid(VARDATA_ANY(output), VARSIZE_ANY_EXHDR(output));
	else
		json = text_to_cstring((text *) output);
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

static int64
interval_to_timeout_us(Interval *timeout)
{
	int64		timeout_us = timeout->time + (int64) timeout->day * USECS_PER_DAY +
		(int64) timeout->month * 30 * USECS_PER_DAY;

	if (timeout_us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	return timeout_us;
}

/*
 * durable.call commits its invocation from another process.  If this
 * transaction already holds an uncommitted invocation with the same
 * idempotency key, that process would wait for us while we wait for it.
 */
static void
refuse_own_idempotency_key(const char *service, const char *handler,
						   const char *key, const char *idempotency_key)
{
	static const char *sql =
		"SELECT id, xmin FROM durable.invocation "
		"WHERE service_name = $1 AND coalesce(service_key, '') = coalesce($2, '') "
		"AND handler_name = $3 AND idempotency_key = $4";
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = "    ";
	bool		isnull;

	values[0] = CStringGetTextDatum(service);
	values[1] = key ? CStringGetTextDatum(key) : (Datum) 0;
	nulls[1] = key ? ' ' : 'n';
	values[2] = CStringGetTextDatum(handler);
	values[3] = CStringGetTextDatum(idempotency_key);

	SPI_connect();
	if (SPI_execute_with_args(sql, 4, types, values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "looking up idempotency key failed");
	if (SPI_processed > 0 &&
		TransactionIdIsCurrentTransactionId(DatumGetTransactionId(
			SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull))))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invocation \"%s\" with idempotency key \"%s\" is not committed yet",
						TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1, &isnull)),
						idempotency_key),
				 errdetail("It was created by the current transaction, which durable.call cannot wait for."),
				 errhint("Commit first, then wait for it with durable.await().")));
	SPI_finish();
}

static Datum
await_result(const char *id, Interval *timeout, bool *isnull)
{
	ConditionVariable *cv = shared_state_completion_cv();
	TimestampTz deadline;

	validate_id(id);
	deadline = GetCurrentTimestamp() + interval_to_timeout_us(timeout);

	for (;;)
	{
		InvocationResult r;
		TimestampTz now;
		long		remaining_ms;

		/* Prepare before looking, so a broadcast in between is not lost. */
		if (cv)
			ConditionVariablePrepareToSleep(cv);
		r = read_result(id, true);
		if (r.found && r.uncommitted && !r.completed)
		{
			if (cv)
				ConditionVariableCancelSleep();
			raise_not_found(id);
		}
		if (!r.found || r.completed)
		{
			if (cv)
				ConditionVariableCancelSleep();
			if (!r.found)
				raise_not_found(id);
			if (r.failed)
				raise_failure(id, &r);
			return output_to_jsonb(id, r.output, isnull);
		}

		now = GetCurrentTimestamp();
		if (now >= deadline)
		{
			if (cv)
				ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_DURABLE_AWAIT_TIMEOUT),
					 errmsg("timed out waiting for invocation \"%s\"", id),
					 strcmp(r.status, "paused") == 0 ?
					 errdetail("The invocation is paused: it failed durable.retry_max_attempts times in a row and is not retried any more.") :
					 errdetail("The invocation is %s; it goes on running.", r.status),
					 errhint("Wait again with durable.await(), or read it later with durable.output().")));
		}
		remaining_ms = (long) TimestampDifferenceMilliseconds(now, deadline) + 1;
		if (cv)
			ConditionVariableTimedSleep(cv, Min(remaining_ms, 1000L), PG_WAIT_EXTENSION);
		else
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(remaining_ms, 100L), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
	}
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

static char *
text_arg_or_null(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * durable.call(service, handler, input jsonb, key, idempotency_key, timeout)
 */
Datum
durable_call(PG_FUNCTION_ARGS)
{
	char	   *service = text_arg_or_null(fcinfo, 0);
	char	   *handler = text_arg_or_null(fcinfo, 1);
	char	   *input = PG_ARGISNULL(2) ? NULL :
		DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(2)));
	char	   *key = text_arg_or_null(fcinfo, 3);
	char	   *idempotency_key = text_arg_or_null(fcinfo, 4);
	char	   *id;
	bool		isnull;
	Datum		d;

	if (service == NULL || handler == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("service and handler must not be NULL")));
	if (PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("timeout must not be NULL")));
	(void) interval_to_timeout_us(PG_GETARG_INTERVAL_P(5));
	if (idempotency_key != NULL)
		refuse_own_idempotency_key(service, handler, key, idempotency_key);

	id = submit_invocation(service, handler, input, key, idempotency_key);
	d = await_result(id, PG_GETARG_INTERVAL_P(5), &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(d);
}
