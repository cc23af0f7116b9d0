/*-------------------------------------------------------------------------
 *
 * submitter.c
 *	  Commits an invocation in a transaction of its own, on behalf of a
 *	  backend (used by durable.call).
 *
 * durable.call must return the invocation's output, so the invocation has
 * to be committed before the caller's statement ends.  A function cannot
 * commit its caller's transaction, so a short-lived background worker,
 * connected to the same database, runs durable.send() as the calling role
 * and commits.  Arguments and results travel through a dynamic shared
 * memory segment.
 *
 * The worker works with the caller's rights, never more: it logs in as the
 * caller's session user (a role that did log in) and then acts as the
 * calling role (current_user), so EXECUTE on durable.send is checked for the
 * caller.  Its search_path is pinned before any SPI, so that per-database or
 * per-role settings cannot change what its query resolves to.
 *
 * IDENTIFICATION
 *	  src/submitter.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "durable.h"
#include "submitter.h"

#define SUBMIT_PENDING	0
#define SUBMIT_OK		1
#define SUBMIT_ERROR	2

#define NARGS 6

typedef struct SubmitRequest
{
	Oid			database;
	Oid			login_role;		/* the caller's session user */
	Oid			role;			/* the caller's current user */
	int			status;
	int			sqlerrcode;
	char		invocation_id[64];
	char		message[1024];
	char		detail[1024];
	char		hint[512];
	/* offsets into data of the NUL-terminated arguments, -1 for NULL */
	int			arg_offset[NARGS];
	char		data[FLEXIBLE_ARRAY_MEMBER];
} SubmitRequest;

static void
copy_text(char *dst, size_t size, const char *src)
{
	strlcpy(dst, src ? src : "", size);
}

void
submitter_main(Datum main_arg)
{
	dsm_segment *seg;
	SubmitRequest *req;
	const char *args[NARGS];
	MemoryContext cxt = CurrentMemoryContext;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("durable submitter could not attach to its request")));
	req = dsm_segment_address(seg);
	for (int i = 0; i < NARGS; i++)
		args[i] = req->arg_offset[i] >= 0 ? req->data + req->arg_offset[i] : NULL;

	BackgroundWorkerInitializeConnectionByOid(req->database, req->login_role, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	PG_TRY();
	{
		Oid			types[NARGS] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
		Datum		values[NARGS];
		char		nulls[NARGS];
		bool		isnull;
		char	   *id;

		for (int i = 0; i < NARGS; i++)
		{
			values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
			nulls[i] = args[i] ? ' ' : 'n';
		}

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();

		/*
		 * Act as the calling role, as SET ROLE would (no check needed: the
		 * caller was running as it already).  A NOLOGIN role reached with
		 * SET ROLE works too, as we logged in as the session user.
		 */
		if (req->role != req->login_role)
			SetCurrentRoleId(req->role, superuser_arg(req->role));

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "durable: submitting invocation for durable.call");

		if (SPI_execute_with_args("SELECT durable.send($1, $2, $3::pg_catalog.jsonb, $4, $5, "
								  "headers => $6::pg_catalog.jsonb)",
								  NARGS, types, values, nulls, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "durable.send failed");
		id = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
		copy_text(req->invocation_id, sizeof(req->invocation_id), id);

		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		req->status = SUBMIT_OK;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		req->sqlerrcode = edata->sqlerrcode;
		copy_text(req->message, sizeof(req->message), edata->message);
		copy_text(req->detail, sizeof(req->detail), edata->detail);
		copy_text(req->hint, sizeof(req->hint), edata->hint);
		req->status = SUBMIT_ERROR;
	}
	PG_END_TRY();

	dsm_detach(seg);
	proc_exit(0);
}

char *
submit_invocation(const char *service, const char *handler,
				  const char *input_json, const char *key,
				  const char *idempotency_key, const char *headers_json)
{
	const char *args[NARGS] = {service, handler, input_json, key, idempotency_key,
	headers_json};
	Size		size = offsetof(SubmitRequest, data);
	Size		pos = 0;
	dsm_segment *seg;
	SubmitRequest *req;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	char	   *id;

	for (int i = 0; i < NARGS; i++)
		if (args[i])
			size += strlen(args[i]) + 1;

	seg = dsm_create(size, 0);
	req = dsm_segment_address(seg);
	memset(req, 0, offsetof(SubmitRequest, data));
	req->database = MyDatabaseId;
	req->login_role = GetSessionUserId();
	req->role = GetUserId();
	req->status = SUBMIT_PENDING;
	for (int i = 0; i < NARGS; i++)
	{
		if (args[i] == NULL)
		{
			req->arg_offset[i] = -1;
			continue;
		}
		req->arg_offset[i] = (int) pos;
		strcpy(req->data + pos, args[i]);
		pos += strlen(args[i]) + 1;
	}

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "durable");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "submitter_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "durable submitter for PID %d", MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "durable submitter");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a background worker to submit the invocation"),
				 errhint("durable.call needs a free background worker slot; raise max_worker_processes, or use durable.send and durable.await.")));

	if (WaitForBackgroundWorkerShutdown(handle) == BGWH_POSTMASTER_DIED)
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("postmaster exited while durable.call was submitting an invocation")));

	if (req->status == SUBMIT_ERROR)
	{
		int			sqlerrcode = req->sqlerrcode;
		char	   *message = pstrdup(req->message);
		char	   *detail = req->detail[0] ? pstrdup(req->detail) : NULL;
		char	   *hint = req->hint[0] ? pstrdup(req->hint) : NULL;

		dsm_detach(seg);
		ereport(ERROR,
				(errcode(sqlerrcode),
				 errmsg_internal("%s", message),
				 detail ? errdetail_internal("%s", detail) : 0,
				 hint ? errhint("%s", hint) : 0));
	}
	if (req->status != SUBMIT_OK)
	{
		dsm_detach(seg);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("durable submitter exited without submitting the invocation"),
				 errhint("See the server log.")));
	}
	id = pstrdup(req->invocation_id);
	dsm_detach(seg);
	return id;
}
