/*-------------------------------------------------------------------------
 *
 * call.c
 *	  durable.call: durable.send committed on its own, then durable.await.
 *
 * durable.call is SECURITY INVOKER, and everything it does on the caller's
 * behalf is done with the caller's rights: a submitter (one of the pool's
 * workers, or one started for this call; see submitter.c) runs
 * durable.send as the calling role and commits it (so EXECUTE on send is
 * checked for it), and the result is awaited by calling durable.await
 * through SPI (so EXECUTE on await is checked too).  A role therefore needs
 * EXECUTE on call, send and await.
 *
 * The one thing the caller cannot do itself is to look for an uncommitted
 * invocation of its own transaction with the same idempotency key, which
 * reads durable.invocation: that lookup runs as the owner of durable's
 * tables, with search_path pinned and every operator qualified, like the
 * body of a SECURITY DEFINER function.
 *
 * IDENTIFICATION
 *	  src/call.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "durable.h"
#include "submitter.h"

PG_FUNCTION_INFO_V1(durable_call);

/* The role that owns durable.invocation: the one that may read it. */
static Oid
durable_tables_owner(void)
{
	Oid			nsp = get_namespace_oid("durable", false);
	Oid			rel = get_relname_relid("invocation", nsp);
	HeapTuple	tuple;
	Oid			owner;

	if (!OidIsValid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table durable.invocation does not exist"),
				 errhint("Is the durable extension installed in this database?")));
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", rel);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
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
		"SELECT i.id, i.xmin FROM durable.invocation i "
		"WHERE i.service_name OPERATOR(pg_catalog.=) $1 "
		"AND coalesce(i.service_key, '') OPERATOR(pg_catalog.=) coalesce($2, '') "
		"AND i.handler_name OPERATOR(pg_catalog.=) $3 "
		"AND i.idempotency_key OPERATOR(pg_catalog.=) $4";
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = "    ";
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	char	   *own_id = NULL;
	MemoryContext caller = CurrentMemoryContext;

	values[0] = CStringGetTextDatum(service);
	values[1] = key ? CStringGetTextDatum(key) : (Datum) 0;
	nulls[1] = key ? ' ' : 'n';
	values[2] = CStringGetTextDatum(handler);
	values[3] = CStringGetTextDatum(idempotency_key);

	/*
	 * Become the owner for this one query, as fmgr does for a SECURITY
	 * DEFINER function with a SET clause.  An error in between is undone by
	 * the (sub)transaction abort, which restores both.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(durable_tables_owner(),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);

	SPI_connect();
	if (SPI_execute_with_args(sql, 4, types, values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "looking up idempotency key failed");
	if (SPI_processed > 0)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		if (TransactionIdIsCurrentTransactionId(
				DatumGetTransactionId(SPI_getbinval(tuple, desc, 2, &isnull))))
		{
			MemoryContext spi = MemoryContextSwitchTo(caller);

			own_id = TextDatumGetCString(SPI_getbinval(tuple, desc, 1, &isnull));
			MemoryContextSwitchTo(spi);
		}
	}
	SPI_finish();

	AtEOXact_GUC(true, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	if (own_id != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invocation \"%s\" with idempotency key \"%s\" is not committed yet",
						own_id, idempotency_key),
				 errdetail("It was created by the current transaction, which durable.call cannot wait for."),
				 errhint("Commit first, then wait for it with durable.await().")));
}

/* Calls durable.await(id, timeout) as the caller: EXECUTE is checked. */
static Datum
await_as_caller(const char *id, Datum timeout, bool *isnull)
{
	Oid			types[2] = {TEXTOID, INTERVALOID};
	Datum		values[2] = {CStringGetTextDatum(id), timeout};
	Datum		result;

	SPI_connect();
	/* Schema-qualified, exact argument types: nothing else can match. */
	if (SPI_execute_with_args("SELECT durable.await($1, $2)", 2, types, values,
							  NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "durable.await returned no row");
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
	if (!*isnull)
		result = SPI_datumTransfer(result, false, -1);
	SPI_finish();
	return result;
}

static char *
text_arg_or_null(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * durable.call(service, handler, input jsonb, key, idempotency_key, timeout,
 *				headers jsonb)
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
	char	   *headers = PG_ARGISNULL(6) ? NULL :
		DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(6)));
	Interval   *timeout;
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

	/* Refused before anything is submitted, as durable.await would. */
	timeout = PG_GETARG_INTERVAL_P(5);
	if (timeout->time < 0 || timeout->day < 0 || timeout->month < 0)
	{
		Interval	zero = {0};

		if (DatumGetBool(DirectFunctionCall2(interval_lt, IntervalPGetDatum(timeout),
											 IntervalPGetDatum(&zero))))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout must not be negative")));
	}
	if (idempotency_key != NULL)
		refuse_own_idempotency_key(service, handler, key, idempotency_key);

	/*
	 * await_as_caller checks EXECUTE on durable.await too, but only after
	 * the invocation is committed: refuse before creating anything.  (EXECUTE
	 * on durable.send is checked by the submitter, which runs it as us.)
	 */
	{
		Oid			await_oid = DatumGetObjectId(
			DirectFunctionCall1(regprocedurein,
								CStringGetDatum("durable.await(pg_catalog.text,pg_catalog.interval)")));

		if (pg_proc_aclcheck(await_oid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
			aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, "await");
	}

	id = submit_invocation(service, handler, input, key, idempotency_key, headers);
	d = await_as_caller(id, PG_GETARG_DATUM(5), &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(d);
}
