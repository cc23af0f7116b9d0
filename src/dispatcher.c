/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *	  The dispatcher background worker: claims runnable invocations, pushes
 *	  them to their services over HTTP and journals what comes back.
 *
 * Each dispatcher runs a single event loop.  One iteration:
 *
 *	1. collect the attempts whose HTTP transfer finished;
 *	2. in ONE short transaction: apply every finished attempt (each in its
 *	   own subtransaction, so one bad response cannot undo the others),
 *	   journal due timers, claim new runnable invocations and load their
 *	   journals;
 *	3. after commit, start the HTTP requests of the claimed attempts;
 *	4. sleep on the latch, postmaster death and libcurl's sockets/timers.
 *
 * Because requests are only started after the claim (and every journal
 * entry they carry) has committed, nothing is sent to a service before it
 * is durable, and no transaction is ever open during network I/O.
 *
 * IDENTIFICATION
 *	  src/dispatcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "attempt.h"
#include "durable.h"
#include "http_client.h"
#include "journal_store.h"
#include "protocol.h"
#include "protocol.pb-c.h"
#include "shared_state.h"

/* Poll for CREATE EXTENSION this often even if nobody wakes us. */
#define EXTENSION_POLL_MS	10000

static int	my_slot;
static bool recovered = false;
static bool extension_ready = false;
static dlist_head in_flight = DLIST_STATIC_INIT(in_flight);
/* Claimed attempts that cannot be sent (their service is gone). */
static dlist_head unsent = DLIST_STATIC_INIT(unsent);
static int	n_in_flight = 0;
static TimestampTz next_wakeup = 0;
static MemoryContext attempts_cxt;

/* Maps an error raised while applying a response to a failure code. */
static int
failure_code_for(int sqlerrcode)
{
	if (sqlerrcode == ERRCODE_FEATURE_NOT_SUPPORTED)
		return 501;
	if (sqlerrcode == ERRCODE_PROTOCOL_VIOLATION)
		return 571;
	return 500;
}

/*
 * Runs fn(arg) in a subtransaction.  Returns NULL on success, else the
 * error it raised (which has been rolled back).
 */
static ErrorData *
in_subtransaction(void (*fn) (void *), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return edata;
}

typedef struct ApplyArgs
{
	Attempt    *attempt;
	AttemptOutcome outcome;
	int			code;
	const char *message;
} ApplyArgs;

static void
apply_response_fn(void *arg)
{
	ApplyArgs  *args = arg;

	args->outcome = attempt_apply_response(args->attempt);
}

static void
record_failure_fn(void *arg)
{
	ApplyArgs  *args = arg;

	/* An unsupported command fails every retry the same way: pause at once. */
	store_attempt_failed(args->attempt->invocation_id, args->code, args->message,
						 -1, args->code == 501);
}

static AttemptOutcome
apply_finished_attempt(Attempt *a)
{
	ApplyArgs	args = {a, ATTEMPT_FAILED, 0, NULL};
	ErrorData  *edata = in_subtransaction(apply_response_fn, &args);

	if (edata == NULL)
		return args.outcome;

	/* Everything this response did was rolled back; record the failure. */
	args.code = failure_code_for(edata->sqlerrcode);
	args.message = edata->message;
	edata = in_subtransaction(record_failure_fn, &args);
	if (edata != NULL)
		ereport(WARNING,
				(errmsg("durable: could not record failed attempt of %s: %s",
						a->invocation_id, edata->message)));
	return ATTEMPT_FAILED;
}

static void
fire_timer_fn(void *arg)
{
	DueTimer   *t = arg;
	Wire__NotificationMessage n = WIRE__NOTIFICATION_MESSAGE__INIT;
	Wire__Void v = WIRE__VOID__INIT;
	size_t		len;
	uint8	   *buf;

	n.id_case = WIRE__NOTIFICATION_MESSAGE__ID_COMPLETION_ID;
	n.completion_id = t->completion_id;
	n.result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_VOID;
	n.void_ = &v;
	len = protobuf_c_message_get_packed_size(&n.base);
	buf = palloc(len);
	protobuf_c_message_pack(&n.base, buf);
	store_append_entry(t->invocation_id, MSG_SLEEP_COMPLETION, NULL,
					   t->completion_id, 0, NULL, buf, len);
}

/*
 * One transaction: apply finished attempts, fire due timers, claim new
 * work.  Returns the claimed attempts, to be started after commit.
 */
static List *
run_cycle(List *finished, bool *any_completed)
{
	List	   *claimed = NIL;
	ListCell   *lc;
	int			capacity;
	MemoryContext loop_cxt = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "durable dispatcher: journaling");

	extension_ready = store_extension_ready();
	if (extension_ready)
	{
		if (!recovered)
		{
			int			n = store_recover(my_slot, durable_workers);

			if (n > 0)
				ereport(LOG,
						(errmsg("durable dispatcher %d: resuming %d interrupted invocation attempt(s)",
								my_slot, n)));
			recovered = true;
		}

		foreach(lc, finished)
		{
			if (apply_finished_attempt((Attempt *) lfirst(lc)) == ATTEMPT_COMPLETED)
				*any_completed = true;
		}

		foreach(lc, store_take_due_timers(1000))
		{
			ErrorData  *edata = in_subtransaction(fire_timer_fn, lfirst(lc));

			if (edata != NULL)
				ereport(WARNING,
						(errmsg("durable: could not journal timer of %s: %s",
								((DueTimer *) lfirst(lc))->invocation_id, edata->message)));
		}

		capacity = durable_max_concurrent_invocations - (n_in_flight - list_length(finished));
		/* Over the memory budget: let running attempts drain first. */
		if (!http_client_has_room())
			capacity = 0;
		if (capacity > 0)
		{
			claimed = store_claim(my_slot, capacity, attempts_cxt, loop_cxt);
			foreach(lc, claimed)
			{
				Attempt    *a = lfirst(lc);

				if (a->uri != NULL)
					attempt_prepare_request(a);
			}
		}
		next_wakeup = store_next_wakeup();
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(loop_cxt);
	return claimed;
}

/* Milliseconds until the next timed event, -1 for none. */
static long
compute_timeout(void)
{
	long		timeout = -1;

	if (!extension_ready)
		return EXTENSION_POLL_MS;
	if (next_wakeup != 0 && n_in_flight < durable_max_concurrent_invocations)
	{
		TimestampTz now = GetCurrentTimestamp();

		timeout = (now >= next_wakeup) ? 0 :
			(long) TimestampDifferenceMilliseconds(now, next_wakeup) + 1;
	}
	return timeout;
}

void
dispatcher_main(Datum main_arg)
{
	MemoryContext loop_cxt;
	bool		need_cycle = true;

	my_slot = DatumGetInt32(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(durable_database, NULL, 0);

	/* Our short transactions must never be cancelled by user settings. */
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	/* The lifecycle functions rely on a fresh snapshot per statement. */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);

	shared_state_attach_dispatcher(my_slot);
	http_client_init();

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "durable dispatcher loop",
									 ALLOCSET_DEFAULT_SIZES);
	attempts_cxt = AllocSetContextCreate(TopMemoryContext, "durable attempts",
										 ALLOCSET_DEFAULT_SIZES);

	ereport(LOG,
			(errmsg("durable dispatcher %d started for database \"%s\"",
					my_slot, durable_database)));

	for (;;)
	{
		List	   *finished = NIL;
		HttpTransfer *t;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(loop_cxt);
		old = MemoryContextSwitchTo(loop_cxt);

		while ((t = http_client_next_finished()) != NULL)
			finished = lappend(finished, t->owner);
		while (!dlist_is_empty(&unsent))
		{
			Attempt    *a = dlist_container(Attempt, node, dlist_pop_head_node(&unsent));

			dlist_push_tail(&in_flight, &a->node);
			finished = lappend(finished, a);
		}

		if (next_wakeup != 0 && GetCurrentTimestamp() >= next_wakeup &&
			n_in_flight < durable_max_concurrent_invocations)
			need_cycle = true;

		if (finished != NIL || need_cycle)
		{
			bool		any_completed = false;
			List	   *claimed = run_cycle(finished, &any_completed);
			ListCell   *lc;

			need_cycle = false;
			if (any_completed)
				shared_state_announce_completions();

			foreach(lc, finished)
			{
				Attempt    *a = lfirst(lc);

				dlist_delete(&a->node);
				n_in_flight--;
				Assert(n_in_flight >= 0);
				attempt_destroy(a);
			}

			foreach(lc, claimed)
			{
				Attempt    *a = lfirst(lc);

				n_in_flight++;
				if (a->uri == NULL)
				{
					/* Service gone: no request; fail it in the next cycle. */
					dlist_push_tail(&unsent, &a->node);
					need_cycle = true;
					continue;
				}
				attempt_start(a);
				dlist_push_tail(&in_flight, &a->node);
			}
		}
		MemoryContextSwitchTo(old);

		if (!need_cycle)
		{
			if (http_client_wait(compute_timeout(), PG_WAIT_EXTENSION))
			{
				ResetLatch(MyLatch);
				need_cycle = true;
			}
		}
	}
}
