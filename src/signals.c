/*-------------------------------------------------------------------------
 *
 * signals.c
 *	  Completing awakeables and sending signals from SQL, in the caller's
 *	  transaction.
 *
 * A completion is not delivered here: it is queued in durable.signal_queue
 * together with the caller's own writes, and a dispatcher delivers it
 * (lifecycle.c, the notification path) once the transaction has committed.
 * So a rolled-back approval is never delivered, a committed one exactly
 * once, and the caller never takes a lock on the invocation row that a
 * dispatcher would then wait for.
 *
 * IDENTIFICATION
 *	  src/signals.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "constants.h"
#include "invocation_id.h"
#include "protocol.h"
#include "shared_state.h"

PG_FUNCTION_INFO_V1(durable_complete_awakeable);
PG_FUNCTION_INFO_V1(durable_send_signal);
PG_FUNCTION_INFO_V1(durable_end_invocation);

/* Code of the TerminalError a rejection becomes in the handler. */
#define REJECTION_FAILURE_CODE	500

/*
 * The status of an invocation, read without locking it; 42704 if there is
 * none (what: what the caller addressed, for the detail).  Call with SPI
 * connected.
 */
static char *
invocation_status(const char *invocation_id, const char *what)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[1] = {CStringGetTextDatum(invocation_id)};
	bool		isnull;

	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};
		SPIPlanPtr	p = SPI_prepare("SELECT status FROM durable.invocation "
									"WHERE id OPERATOR(pg_catalog.=) $1", 1, types);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		plan = p;
	}
	if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading invocation %s failed", invocation_id);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invocation \"%s\" not found", invocation_id),
				 what ? errdetail("The %s belongs to that invocation.", what) : 0));
	return TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
}

/* The SignalNotification for the queue, as a bytea. */
static bytea *
signal_notification_bytea(uint32 index, const char *name, const SignalResult *result)
{
	size_t		len;
	uint8	   *raw = protocol_signal_notification(index, name, result, &len);
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), raw, len);
	return b;
}

/*
 * Checks the target, then queues the notification.  signal_index != 0 is an
 * awakeable (completed once), else signal_name names the signal.
 */
static void
queue_signal(const char *invocation_id, uint32 signal_index, const char *signal_name,
			 const SignalResult *result, const char *what)
{
	static SPIPlanPtr completed_plan = NULL;
	static SPIPlanPtr insert_plan = NULL;
	Datum		values[4];
	char		nulls[4] = "    ";
	bool		isnull;
	char	   *status;

	SPI_connect();
	if (completed_plan == NULL)
	{
		Oid			t2[3] = {TEXTOID, INT4OID, INT4OID};
		Oid			t4[4] = {TEXTOID, INT4OID, TEXTOID, BYTEAOID};

		completed_plan = SPI_prepare(
			"SELECT EXISTS (SELECT 1 FROM durable.journal_entry j "
			"                WHERE j.invocation_id OPERATOR(pg_catalog.=) $1 "
			"                  AND j.entry_type OPERATOR(pg_catalog.=) $3 "
			"                  AND j.signal_id OPERATOR(pg_catalog.=) $2) "
			"    OR EXISTS (SELECT 1 FROM durable.signal_queue q "
			"                WHERE q.invocation_id OPERATOR(pg_catalog.=) $1 "
			"                  AND q.signal_index OPERATOR(pg_catalog.=) $2)", 3, t2);
		insert_plan = SPI_prepare(
			"INSERT INTO durable.signal_queue (invocation_id, signal_index, signal_name, raw) "
			"VALUES ($1, $2, $3, $4) "
			"ON CONFLICT (invocation_id, signal_index) WHERE signal_index IS NOT NULL "
			"DO NOTHING", 4, t4);
		if (completed_plan == NULL || insert_plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(completed_plan);
		SPI_keepplan(insert_plan);
	}

	status = invocation_status(invocation_id, what);
	if (strcmp(status, STATUS_COMPLETED) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invocation \"%s\" is completed", invocation_id),
				 errdetail("Nothing waits for the %s any more.", what)));

	values[0] = CStringGetTextDatum(invocation_id);
	if (signal_index != 0)
	{
		values[1] = Int32GetDatum((int32) signal_index);
		values[2] = Int32GetDatum(MSG_SIGNAL_NOTIFICATION);
		if (SPI_execute_plan(completed_plan, values, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "reading the journal of invocation %s failed", invocation_id);
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the %s was already completed", what),
					 errdetail("An awakeable is completed once; the first completion stands.")));
	}

	values[1] = Int32GetDatum((int32) signal_index);
	nulls[1] = signal_index != 0 ? ' ' : 'n';
	values[2] = signal_name ? CStringGetTextDatum(signal_name) : (Datum) 0;
	nulls[2] = signal_name ? ' ' : 'n';
	values[3] = PointerGetDatum(signal_notification_bytea(signal_index, signal_name, result));
	if (SPI_execute_plan(insert_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "queuing a signal for invocation %s failed", invocation_id);
	/* A concurrent transaction queued the same awakeable and committed. */
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the %s was already completed", what),
				 errdetail("An awakeable is completed once; the first completion stands.")));
	SPI_finish();

	shared_state_wake_dispatchers_at_commit();
}

/* The value, or the failure, an SQL caller completes with. */
static SignalResult
result_from_args(FunctionCallInfo fcinfo, int value_arg, int failure_arg)
{
	SignalResult result = {0};

	if (!PG_ARGISNULL(failure_arg))
	{
		result.kind = SIGNAL_FAILURE;
		result.failure_code = REJECTION_FAILURE_CODE;
		result.failure_message = text_to_cstring(PG_GETARG_TEXT_PP(failure_arg));
	}
	else if (!PG_ARGISNULL(value_arg))
	{
		bytea	   *v = PG_GETARG_BYTEA_PP(value_arg);

		result.kind = SIGNAL_VALUE;
		result.value = (const uint8 *) VARDATA_ANY(v);
		result.value_len = VARSIZE_ANY_EXHDR(v);
	}
	else
		result.kind = SIGNAL_VOID;
	return result;
}

/*
 * durable._complete_awakeable(awakeable_id text, value bytea, failure text)
 */
Datum
durable_complete_awakeable(PG_FUNCTION_ARGS)
{
	char	   *id;
	uint8		raw[INVOCATION_ID_RAW_LEN];
	uint32		index;
	SignalResult result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("awakeable id must not be NULL")));
	id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!awakeable_id_parse(id, raw, &index) || index < SIGNAL_FIRST_AWAKEABLE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid awakeable id \"%s\"", id),
				 errdetail("An awakeable id is \"sign_1\" followed by 38 base64url characters, as ctx.awakeable() returns it.")));
	result = result_from_args(fcinfo, 1, 2);
	queue_signal(invocation_id_format(raw), index, NULL, &result,
				 psprintf("awakeable \"%s\"", id));
	PG_RETURN_VOID();
}

/*
 * durable._send_signal(invocation_id text, name text, value bytea, failure text)
 */
Datum
durable_send_signal(PG_FUNCTION_ARGS)
{
	char	   *id;
	char	   *name;
	uint8		raw[INVOCATION_ID_RAW_LEN];
	SignalResult result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("invocation id and signal name must not be NULL")));
	id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	invocation_id_parse_or_error(id, raw);
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("signal name must not be empty")));
	result = result_from_args(fcinfo, 2, 3);
	queue_signal(id, 0, name, &result, psprintf("signal \"%s\"", name));
	PG_RETURN_VOID();
}

/*
 * durable._end_invocation(invocation_id text, kill boolean) returns boolean
 *
 * Cancel queues the CANCEL signal (index 1): a started invocation gets it
 * in its journal and its handler unwinds (the SDK throws a cancellation
 * error, compensations run); one that never started ends at once with
 * failure 409 when the signal is delivered.  Kill queues an order to end
 * the invocation with failure 409 without asking the service.  Either is
 * carried out by a dispatcher once the caller commits (lifecycle.c).
 * Returns false, and does nothing, for a completed invocation.
 */
Datum
durable_end_invocation(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr queue_plan = NULL;
	char	   *id;
	bool		kill = PG_GETARG_BOOL(1);
	uint8		raw[INVOCATION_ID_RAW_LEN];
	Datum		values[3];
	char		nulls[3] = "   ";

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("invocation id must not be NULL")));
	id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	invocation_id_parse_or_error(id, raw);

	SPI_connect();
	if (queue_plan == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, BYTEAOID};
		SPIPlanPtr	p = SPI_prepare(
			"INSERT INTO durable.signal_queue (invocation_id, action, signal_index, raw) "
			"VALUES ($1, $2, CASE WHEN $2 OPERATOR(pg_catalog.=) 'signal' THEN "
			SIGNAL_CANCEL_TEXT " END, $3) "
			"ON CONFLICT (invocation_id, signal_index) WHERE signal_index IS NOT NULL "
			"DO NOTHING", 3, types);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		queue_plan = p;
	}
	if (strcmp(invocation_status(id, NULL), STATUS_COMPLETED) == 0)
	{
		SPI_finish();
		PG_RETURN_BOOL(false);
	}

	values[0] = CStringGetTextDatum(id);
	values[1] = CStringGetTextDatum(kill ? "kill" : "signal");
	if (kill)
		nulls[2] = 'n';
	else
	{
		SignalResult cancel = {SIGNAL_VOID};

		values[2] = PointerGetDatum(signal_notification_bytea(SIGNAL_CANCEL, NULL, &cancel));
	}
	if (SPI_execute_plan(queue_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "queuing the %s of invocation %s failed", kill ? "kill" : "cancellation", id);
	SPI_finish();

	shared_state_wake_dispatchers_at_commit();
	PG_RETURN_BOOL(true);
}
