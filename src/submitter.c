/*-------------------------------------------------------------------------
 *
 * submitter.c
 *	  Commits an invocation in a transaction of its own, on behalf of a
 *	  backend (used by durable.call).
 *
 * durable.call must return the invocation's output, so the invocation has
 * to be committed before the caller's statement ends.  A function cannot
 * commit its caller's transaction, so another process runs durable.send()
 * as the calling role and commits:
 *
 * - normally one of the submitters, durable.submitters static background
 *   workers connected to durable.database as the bootstrap superuser.  The
 *   backend hands them its request through shared memory
 *   (submit_queue.c); nothing is started per call.
 * - otherwise (a caller in another database, durable.submitters = 0,
 *   durable not preloaded, no submitter running) a short-lived dynamic
 *   background worker, started for the one call, connected to the
 *   caller's database as the caller's session user.  Arguments and
 *   results travel through a DSM segment.
 *
 * Either way durable.send runs with the caller's rights, never more: as
 * its current role (current_user), with SECURITY_LOCAL_USERID_CHANGE and
 * SECURITY_RESTRICTED_OPERATION as for a SECURITY DEFINER function, so
 * EXECUTE on durable.send is checked for the caller and nothing it runs
 * can SET ROLE or SET SESSION AUTHORIZATION back to the submitter's own
 * login; settings changed while it runs are rolled back.  The search_path
 * is pinned before any SPI, so that per-database or per-role settings
 * cannot change what its query resolves to.
 *
 * A submitter survives bad requests: an error of durable.send aborts that
 * request's transaction and is reported to its caller, and the submitter
 * takes the next request.  A request whose caller gave up (cancelled)
 * is cancelled in the submitter too (SIGINT from the caller, honoured only
 * for such a request), so that a submitter blocked on a lock is not lost to
 * the pool.  From the commit until the result is reported, interrupts are
 * held: a submitter that exits while it holds a request has not committed
 * it, and says so to the caller.
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
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "durable.h"
#include "shared_state.h"
#include "submit_queue.h"
#include "submitter.h"

#define NARGS SUBMIT_NARGS

/* How often a starting submitter looks for a connected dispatcher. */
#define DISPATCHER_POLL_MS 200

/*
 * Runs durable.send with args in the current transaction, as role; returns
 * the invocation id, allocated in result_cxt.
 */
static char *
run_send(Oid role, char *const args[NARGS], MemoryContext result_cxt)
{
	Oid			types[NARGS] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[NARGS];
	char		nulls[NARGS];
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	bool		isnull;
	Datum		d;
	char	   *id;

	for (int i = 0; i < NARGS; i++)
	{
		values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
		nulls[i] = args[i] ? ' ' : 'n';
	}

	/*
	 * Act as the calling role (no check needed: the caller was running as
	 * it already), as fmgr does for a SECURITY DEFINER function.  An error
	 * in between is undone by the transaction abort, which restores both.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(role, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();

	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args("SELECT durable.send($1, $2, $3::pg_catalog.jsonb, $4, $5, "
							  "headers => $6::pg_catalog.jsonb)",
							  NARGS, types, values, nulls, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "durable.send returned no row");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "durable.send returned NULL");
	id = MemoryContextStrdup(result_cxt, TextDatumGetCString(d));
	SPI_finish();
	PopActiveSnapshot();

	/* Nothing the request changed outlives it in this session. */
	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return id;
}

/* ------------------------------------------------------------------ pool */

/*
 * SIGINT cancels the request at hand only if its caller gave it up; a
 * stray cancel (say, pg_cancel_backend) must not fail someone's call.
 */
static void
cancel_abandoned_request(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (submit_queue_current_abandoned())
	{
		InterruptPending = true;
		QueryCancelPending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * Connects to durable.database once a dispatcher has connected to it: a
 * missing database is then reported (once) by the dispatchers, and the
 * submitters wait for it quietly, without a connection, instead of dying
 * in a restart loop.
 */
static void
connect_to_database(void)
{
	while (!shared_state_dispatcher_running())
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 DISPATCHER_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
	BackgroundWorkerInitializeConnection(durable_database, NULL, 0);
}

/* Runs one request in a transaction of its own and reports how it went. */
static void
handle_request(SubmitWork *work, MemoryContext cxt)
{
	PG_TRY();
	{
		char	   *id;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		pgstat_report_activity(STATE_RUNNING, "durable: submitting invocation for durable.call");
		id = run_send(work->role, work->args, cxt);
		HOLD_INTERRUPTS();
		CommitTransactionCommand();
		submit_queue_report(id, NULL);
		RESUME_INTERRUPTS();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		submit_queue_report(NULL, edata);
		RESUME_INTERRUPTS();
		FreeErrorData(edata);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
}

void
submitter_main(Datum main_arg)
{
	int			index = DatumGetInt32(main_arg);
	MemoryContext request_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	pqsignal(SIGINT, cancel_abandoned_request);
	BackgroundWorkerUnblockSignals();

	connect_to_database();

	/*
	 * Cancelling a request is its caller's business (its statement_timeout,
	 * its cancel), not ours.
	 */
	durable_pin_worker_settings();

	submit_queue_attach_submitter(index);
	request_cxt = AllocSetContextCreate(TopMemoryContext, "durable submitter request",
										ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(request_cxt);

	ereport(DEBUG1,
			(errmsg("durable submitter %d started for database \"%s\"",
					index, durable_database)));

	for (;;)
	{
		SubmitWork	work;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		submit_queue_set_idle(false);
		for (;;)
		{
			if (!submit_queue_take(&work))
			{
				/* Idle, then one more look: see submit_queue_set_idle. */
				submit_queue_set_idle(true);
				if (!submit_queue_take(&work))
					break;
				submit_queue_set_idle(false);
			}
			handle_request(&work, request_cxt);
			MemoryContextSwitchTo(request_cxt);
			MemoryContextReset(request_cxt);
			CHECK_FOR_INTERRUPTS();
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* -------------------------------------------------- one worker per call */

#define SUBMIT_PENDING	0
#define SUBMIT_OK		1
#define SUBMIT_ERROR	2

typedef struct OnceRequest
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
} OnceRequest;

static void
copy_text(char *dst, size_t size, const char *src)
{
	strlcpy(dst, src ? src : "", size);
}

void
submitter_once_main(Datum main_arg)
{
	dsm_segment *seg;
	OnceRequest *req;
	char	   *args[NARGS];
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
		char	   *id;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		pgstat_report_activity(STATE_RUNNING, "durable: submitting invocation for durable.call");
		id = run_send(req->role, args, cxt);
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		copy_text(req->invocation_id, sizeof(req->invocation_id), id);
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

static char *
submit_with_own_worker(const char *const args[NARGS])
{
	Size		size = offsetof(OnceRequest, data);
	Size		pos = 0;
	dsm_segment *seg;
	OnceRequest *req;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	char	   *id;

	for (int i = 0; i < NARGS; i++)
		if (args[i])
			size += strlen(args[i]) + 1;

	seg = dsm_create(size, 0);
	req = dsm_segment_address(seg);
	memset(req, 0, offsetof(OnceRequest, data));
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
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "submitter_once_main");
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

char *
submit_invocation(const char *service, const char *handler,
				  const char *input_json, const char *key,
				  const char *idempotency_key, const char *headers_json)
{
	const char *args[NARGS] = {service, handler, input_json, key, idempotency_key,
	headers_json};
	char	   *id;

	id = submit_queue_submit(args);
	if (id == NULL)
		id = submit_with_own_worker(args);
	return id;
}
