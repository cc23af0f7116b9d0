/*-------------------------------------------------------------------------
 *
 * signals.c
 *	  Completing awakeables and sending signals from SQL, in the caller's
 *	  transaction.
 *
 * A completion is not delivered here: it is queued in durable.notification_queue
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
PG_FUNCTION_INFO_V1(durable_complete_promise);

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

/* Encoded bytes as a bytea. */
static bytea *
as_bytea(const uint8 *raw, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), raw, len);
	return b;
}

/* The SignalNotification for the queue, as a bytea. */
static bytea *
signal_notification_bytea(uint32 index, const char *name, const NotificationResult *result)
{
	size_t		len;
	uint8	   *raw = protocol_signal_notification(index, name, result, &len);

	return as_bytea(raw, len);
}

/*
 * Checks the target, then queues the notification.  signal_index != 0 is an
 * awakeable (completed once), else signal_name names the signal.
 */
static void
queue_signal(const char *invocation_id, uint32 signal_index, const char *signal_name,
			 const NotificationResult *result, const char *what)
{
	static SPIPlanPtr completed_plan = NULL;
	static SPIPlanPtr insert_plan = NULL;
	Datum		values[5];
	char		nulls[5] = "     ";
	bool		isnull;
	char	   *status;

	SPI_connect();
	if (completed_plan == NULL)
	{
		Oid			t2[3] = {TEXTOID, INT4OID, INT4OID};
		Oid			t5[5] = {TEXTOID, INT4OID, TEXTOID, BYTEAOID, INT4OID};

		completed_plan = SPI_prepare(
			"SELECT EXISTS (SELECT 1 FROM durable.journal_entry j "
			"                WHERE j.invocation_id OPERATOR(pg_catalog.=) $1 "
			"                  AND j.entry_type OPERATOR(pg_catalog.=) $3 "
			"                  AND j.signal_id OPERATOR(pg_catalog.=) $2)", 3, t2);
		insert_plan = SPI_prepare(
			"INSERT INTO durable.notification_queue (invocation_id, entry_type, signal_index, "
			"                                        signal_name, raw) "
			"VALUES ($1, $5, $2, $3, $4) "
			"ON CONFLICT (invocation_id, signal_index) WHERE signal_index IS NOT NULL "
			"DO NOTHING", 5, t5);
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

	/*
	 * Queue first, then look in the journal: a completion queued earlier
	 * that a dispatcher is delivering right now makes the insert wait until
	 * it commits, and the look that follows then sees it journaled.
	 */
	values[0] = CStringGetTextDatum(invocation_id);
	values[1] = Int32GetDatum((int32) signal_index);
	nulls[1] = signal_index != 0 ? ' ' : 'n';
	values[2] = signal_name ? CStringGetTextDatum(signal_name) : (Datum) 0;
	nulls[2] = signal_name ? ' ' : 'n';
	values[3] = PointerGetDatum(signal_notification_bytea(signal_index, signal_name, result));
	values[4] = Int32GetDatum(MSG_SIGNAL_NOTIFICATION);
	if (SPI_execute_plan(insert_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "queuing a signal for invocation %s failed", invocation_id);
	/* The same awakeable is queued already. */
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the %s was already completed", what),
				 errdetail("An awakeable is completed once; the first completion stands.")));
	if (signal_index != 0)
	{
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
	SPI_finish();

	shared_state_wake_dispatchers_at_commit();
}

/* The value, or the failure, an SQL caller completes with. */
static NotificationResult
result_from_args(FunctionCallInfo fcinfo, int value_arg, int failure_arg)
{
	NotificationResult result = {0};

	if (!PG_ARGISNULL(failure_arg))
	{
		result.kind = RESULT_FAILURE;
		result.failure_code = REJECTION_FAILURE_CODE;
		result.failure_message = text_to_cstring(PG_GETARG_TEXT_PP(failure_arg));
	}
	else if (!PG_ARGISNULL(value_arg))
	{
		bytea	   *v = PG_GETARG_BYTEA_PP(value_arg);

		result.kind = RESULT_VALUE;
		result.value = (const uint8 *) VARDATA_ANY(v);
		result.value_len = VARSIZE_ANY_EXHDR(v);
	}
	else
		result.kind = RESULT_VOID;
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
	NotificationResult result;

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
	NotificationResult result;

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
	Datum		values[4];
	char		nulls[4] = "    ";

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("invocation id must not be NULL")));
	id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	invocation_id_parse_or_error(id, raw);

	SPI_connect();
	if (queue_plan == NULL)
	{
		Oid			types[4] = {TEXTOID, TEXTOID, BYTEAOID, INT4OID};
		SPIPlanPtr	p = SPI_prepare(
			"INSERT INTO durable.notification_queue (invocation_id, action, entry_type, "
			"                                        signal_index, raw) "
			"VALUES ($1, $2, CASE WHEN $2 OPERATOR(pg_catalog.=) 'notify' THEN $4 END, "
			"CASE WHEN $2 OPERATOR(pg_catalog.=) 'notify' THEN " SIGNAL_CANCEL_TEXT " END, $3) "
			"ON CONFLICT (invocation_id, signal_index) WHERE signal_index IS NOT NULL "
			"DO NOTHING", 4, types);

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
	values[1] = CStringGetTextDatum(kill ? "kill" : "notify");
	values[3] = Int32GetDatum(MSG_SIGNAL_NOTIFICATION);
	if (kill)
		nulls[2] = 'n';
	else
	{
		NotificationResult cancel = {RESULT_VOID};

		values[2] = PointerGetDatum(signal_notification_bytea(SIGNAL_CANCEL, NULL, &cancel));
	}
	if (SPI_execute_plan(queue_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "queuing the %s of invocation %s failed", kill ? "kill" : "cancellation", id);
	SPI_finish();

	shared_state_wake_dispatchers_at_commit();
	PG_RETURN_BOOL(true);
}

/*
 * durable._complete_promise(workflow text, key text, name text, value bytea,
 *							 failure text)
 *
 * Queues the completion of a workflow's promise; a dispatcher completes it
 * and tells whoever waits for it once the caller commits (so the caller
 * never locks the promise a dispatcher would then wait for).  A promise is
 * completed once: one that is completed, or has a completion queued, is
 * refused with 55000.
 */
Datum
durable_complete_promise(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr check_plan = NULL;
	static SPIPlanPtr queue_plan = NULL;
	char	   *workflow;
	char	   *key;
	char	   *name;
	NotificationResult result;
	Datum		values[4];
	bool		isnull;
	char	   *service_ty;
	size_t		len;
	uint8	   *raw;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("workflow, key and promise name must not be NULL")));
	workflow = text_to_cstring(PG_GETARG_TEXT_PP(0));
	key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	name = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("promise name must not be empty")));
	result = result_from_args(fcinfo, 3, 4);

	SPI_connect();
	if (check_plan == NULL)
	{
		Oid			t3[3] = {TEXTOID, TEXTOID, TEXTOID};
		Oid			t4[4] = {TEXTOID, TEXTOID, TEXTOID, BYTEAOID};

		check_plan = SPI_prepare(
			"SELECT (SELECT s.ty FROM durable.service s "
			"         WHERE s.name OPERATOR(pg_catalog.=) $1), "
			"       EXISTS (SELECT 1 FROM durable.promise p "
			"                WHERE p.service_name OPERATOR(pg_catalog.=) $1 "
			"                  AND p.service_key OPERATOR(pg_catalog.=) $2 "
			"                  AND p.name OPERATOR(pg_catalog.=) $3 AND p.completed)", 3, t3);
		queue_plan = SPI_prepare(
			"INSERT INTO durable.notification_queue (action, service_name, service_key, "
			"                                        promise_name, raw) "
			"VALUES ('promise', $1, $2, $3, $4) "
			"ON CONFLICT (service_name, service_key, promise_name) "
			"WHERE action OPERATOR(pg_catalog.=) 'promise' DO NOTHING", 4, t4);
		if (check_plan == NULL || queue_plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(check_plan);
		SPI_keepplan(queue_plan);
	}
	values[0] = CStringGetTextDatum(workflow);
	values[1] = CStringGetTextDatum(key);
	values[2] = CStringGetTextDatum(name);
	raw = protocol_completion_notification(0, &result, &len);
	values[3] = PointerGetDatum(as_bytea(raw, len));

	/*
	 * Queue first, then look: a completion queued earlier that a dispatcher
	 * is delivering right now makes the insert wait until it commits, and
	 * the look that follows then sees the promise completed.
	 */
	if (SPI_execute_plan(queue_plan, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "queuing the completion of promise \"%s\" failed", name);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("promise \"%s\" of %s/%s is already completed", name, workflow, key),
				 errdetail("Another completion of it is waiting to be delivered; the first completion stands.")));
	if (SPI_execute_plan(check_plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading promise \"%s\" failed", name);
	service_ty = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (service_ty == NULL || strcmp(service_ty, "workflow") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("workflow \"%s\" not found", workflow),
				 service_ty ? errdetail("\"%s\" is a %s, and only workflows have promises.",
										workflow, service_ty) : 0));
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("promise \"%s\" of %s/%s is already completed", name, workflow, key),
				 errdetail("A promise is completed once; the first completion stands.")));
	SPI_finish();

	shared_state_wake_dispatchers_at_commit();
	PG_RETURN_VOID();
}
