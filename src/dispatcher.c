/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *	  The dispatcher background worker: claims runnable invocations, pushes
 *	  them to their services over HTTP and journals what comes back.
 *
 * Each dispatcher runs a single event loop.  One iteration:
 *
 *	1. collect the attempts whose HTTP transfer finished, and the streaming
 *	   attempts on which new messages arrived; end the request of streams
 *	   idle for durable.stream_idle_timeout;
 *	2. in ONE short transaction (lifecycle.c does the work, one
 *	   subtransaction per invocation): apply them, journal due timers,
 *	   deliver queued notifications, release running invocations of this
 *	   slot that have no live attempt, claim new runnable invocations and
 *	   load their journals, and look up the notifications open streams were
 *	   not sent yet;
 *	3. after commit, send those notifications on their streams and start
 *	   the HTTP requests of the claimed attempts;
 *	4. sleep on the latch, postmaster death and libcurl's sockets/timers,
 *	   at most a second.
 *
 * Because requests are only started after the claim (and every journal
 * entry they carry) has committed, nothing is sent to a service before it
 * is durable, and no transaction is ever open during network I/O.
 *
 * The loop never dies of an error in its transaction: the error is logged,
 * the transaction rolled back, and the invocations it was handling are
 * found again, still running and without a live attempt, a second later.
 * The bounded sleep also picks up what no wake-up announced: a COMMIT
 * PREPARED of a transaction that sent, rows restored from a dump.
 *
 * IDENTIFICATION
 *	  src/dispatcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
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
#include "lifecycle.h"
#include "shared_state.h"

/* Longest sleep without a look at the tables. */
#define MAX_WAIT_MS			1000

/* How often a dispatcher looks for a missing durable.database. */
#define DATABASE_POLL_MS	10000

/* After a failed cycle, wait this long before the next one. */
#define ERROR_BACKOFF_MS	1000

static int	my_slot;
static Oid	extension_oid = InvalidOid;
static bool released_once = false;
static dlist_head in_flight = DLIST_STATIC_INIT(in_flight);
/* Claimed attempts whose request could not be started: failed next cycle. */
static dlist_head unstarted = DLIST_STATIC_INIT(unstarted);
static int	n_in_flight = 0;
/* How soon to look again when something due could not be claimed. */
#define BUSY_RETRY_MS	50

static TimestampTz next_wakeup = 0;
static TimestampTz next_stream_check = 0;
static TimestampTz last_cycle = 0;
static TimestampTz last_release = 0;
static MemoryContext attempts_cxt;

/* Ids of the attempts in flight that have not ended. */
static List *
live_attempt_ids(void)
{
	List	   *ids = NIL;
	dlist_iter	iter;

	dlist_foreach(iter, &in_flight)
	{
		Attempt    *a = dlist_container(Attempt, node, iter.cur);

		if (!a->ended)
			ids = lappend(ids, a->invocation_id);
	}
	return ids;
}

static bool
stream_is_open(const Attempt *a)
{
	return a->bidi && a->started && !a->ended && !a->input_closed &&
		!a->transfer.finished;
}

/*
 * Streaming attempts that may still be sent notifications: all of them, or
 * those of the list given.
 */
static List *
open_streams(List *among, bool all)
{
	List	   *open = NIL;
	dlist_iter	iter;
	ListCell   *lc;

	if (!all)
	{
		foreach(lc, among)
			if (stream_is_open((Attempt *) lfirst(lc)))
				open = lappend(open, lfirst(lc));
		return open;
	}
	dlist_foreach(iter, &in_flight)
	{
		Attempt    *a = dlist_container(Attempt, node, iter.cur);

		if (stream_is_open(a))
			open = lappend(open, a);
	}
	return open;
}

/*
 * Watches the streaming attempts' clocks: one idle for
 * durable.stream_idle_timeout (or its handler's inactivity timeout, if
 * shorter) has its request ended, so that the service suspends when it next
 * waits; one whose request has ended is aborted once it received nothing
 * for the inactivity timeout or ran on for the abort timeout since.
 * Returns when to look next (0: nothing to watch).
 */
static TimestampTz
watch_streams(TimestampTz now)
{
	TimestampTz next = 0;
	dlist_iter	iter;

	dlist_foreach(iter, &in_flight)
	{
		Attempt    *a = dlist_container(Attempt, node, iter.cur);
		TimestampTz due;

		if (!a->bidi || !a->started || a->ended || a->transfer.finished)
			continue;
		if (!a->input_closed)
		{
			due = TimestampTzPlusMilliseconds(Max(a->last_activity, a->transfer.last_received),
											  Min((long) durable_stream_idle_timeout_ms,
												  a->inactivity_timeout_ms));
			if (now >= due)
				attempt_close_input(a);
		}
		if (a->input_closed)
		{
			TimestampTz silent = TimestampTzPlusMilliseconds(Max(a->input_closed_at,
																 a->transfer.last_received),
															 a->inactivity_timeout_ms);
			TimestampTz aborted = TimestampTzPlusMilliseconds(a->input_closed_at,
															  a->abort_timeout_ms);

			due = Min(silent, aborted);
			if (now >= due)
			{
				http_client_abort(&a->transfer, CURLE_OPERATION_TIMEDOUT,
								  now >= silent ?
								  "the service sent nothing for the inactivity timeout after it was asked to suspend" :
								  "the service did not end its response within the abort timeout after it was asked to suspend");
				continue;
			}
		}
		if (next == 0 || due < next)
			next = due;
	}
	return next;
}

/*
 * One transaction: apply finished attempts (and what streams sent so far),
 * deliver queued notifications, fire due timers, release lost attempts,
 * claim new work.  Returns the claimed attempts, to be started after
 * commit; completed_ids receives the ids of completed invocations.
 *
 * A turn that only applies what streams sent (nobody woke us, nothing fell
 * due, no attempt ended) skips the rest: with many streams open, most
 * turns are such turns, and the rest costs several statements each.
 */
static List *
run_cycle(List *finished, bool housekeeping, List **completed_ids)
{
	List	   *claimed = NIL;
	ListCell   *lc;
	int			capacity;
	Oid			ext;
	MemoryContext loop_cxt = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "durable dispatcher: journaling");

	ext = store_extension_oid();
	if (ext != extension_oid)
	{
		/* Dropped or created again: the kept plans name objects of the old one. */
		store_forget_plans();
		released_once = false;
		extension_oid = ext;
	}

	if (OidIsValid(ext))
	{
		int			n;
		int			n_ended = 0;

		foreach(lc, finished)
		{
			Attempt    *a = lfirst(lc);

			if (lifecycle_finish_attempt(a, my_slot))
				*completed_ids = lappend(*completed_ids, a->invocation_id);
			if (a->ended)
				n_ended++;
		}
		/* A stream's new timer: the turn that fires it must come in time. */
		{
			TimestampTz t = lifecycle_take_earliest_new_timer();

			if (t != 0 && (next_wakeup == 0 || t < next_wakeup))
				next_wakeup = t;
		}

		if (housekeeping)
		{
			*completed_ids = list_concat(*completed_ids, lifecycle_deliver_signals(1000));
			lifecycle_fire_due_timers(1000);
		}

		/* Once a second is plenty: lost attempts are rare. */
		if (housekeeping &&
			(!released_once ||
			 GetCurrentTimestamp() >= TimestampTzPlusMilliseconds(last_release, MAX_WAIT_MS)))
		{
			n = lifecycle_release_orphans(my_slot, durable_workers,
										  live_attempt_ids());
			if (n > 0)
				ereport(LOG,
						(errmsg(released_once ?
								"durable dispatcher %d: made %d running invocation(s) without a live attempt runnable again" :
								"durable dispatcher %d: resuming %d interrupted invocation attempt(s)",
								my_slot, n)));
			released_once = true;
			last_release = GetCurrentTimestamp();
			if (my_slot == 0)
			{
				(void) store_expire_idempotency_keys(1000);
				(void) store_expire_workflows(1000);
			}
		}

		/* An attempt that ended left room for another. */
		if (housekeeping || n_ended > 0)
		{
			capacity = durable_max_concurrent_invocations - (n_in_flight - n_ended);
			/* Over the memory budget: let running attempts drain first. */
			if (!http_client_has_room())
				capacity = 0;
			if (capacity > 0)
				claimed = lifecycle_claim(my_slot, capacity, attempts_cxt, loop_cxt);
			next_wakeup = lifecycle_next_wakeup();

			/*
			 * Something is due but nothing could be claimed: it is claimed by
			 * another dispatcher right now, or its key's state is being
			 * changed from SQL (durable.set_state).  Look again shortly, not
			 * at once.
			 */
			if (claimed == NIL && capacity > 0 && next_wakeup != 0 &&
				next_wakeup <= GetCurrentTimestamp())
				next_wakeup = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BUSY_RETRY_MS);
		}

		/*
		 * Last: what this transaction journaled for open streams, and, when
		 * we were woken, what other transactions did.
		 */
		lifecycle_queue_stream_notifications(open_streams(finished, housekeeping));
	}
	else
		next_wakeup = 0;

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(loop_cxt);
	return claimed;
}

/*
 * run_cycle, but an error in it (a deadlock, an object dropped under us)
 * is logged and rolled back instead of ending the process.
 */
static List *
run_cycle_guarded(List *finished, bool housekeeping, List **completed_ids,
				  bool *failed)
{
	MemoryContext loop_cxt = CurrentMemoryContext;
	List	   *volatile claimed = NIL;

	*failed = false;
	PG_TRY();
	{
		claimed = run_cycle(finished, housekeeping, completed_ids);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(loop_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		RESUME_INTERRUPTS();
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("durable dispatcher %d: cycle failed: %s", my_slot, edata->message),
				 errdetail("Its work was rolled back; unfinished attempts run again.")));
		FreeErrorData(edata);
		store_forget_plans();
		claimed = NIL;
		*completed_ids = NIL;
		*failed = true;
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_END_TRY();
	return claimed;
}

/* Starts an attempt's request; one that cannot start fails next cycle. */
static void
start_attempt(Attempt *a)
{
	MemoryContext cxt = CurrentMemoryContext;

	n_in_flight++;
	PG_TRY();
	{
		attempt_start(a);
		dlist_push_tail(&in_flight, &a->node);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		a->transfer.finished = true;
		a->transfer.result = CURLE_FAILED_INIT;
		strlcpy(a->transfer.errbuf, edata->message, sizeof(a->transfer.errbuf));
		FreeErrorData(edata);
		dlist_push_tail(&unstarted, &a->node);
	}
	PG_END_TRY();
}

static void
destroy_attempt(Attempt *a)
{
	dlist_delete(&a->node);
	n_in_flight--;
	Assert(n_in_flight >= 0);
	attempt_destroy(a);
}

/* The extension is gone: its attempts have nowhere to go. */
static void
abandon_attempts(void)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &in_flight)
		destroy_attempt(dlist_container(Attempt, node, iter.cur));
	dlist_foreach_modify(iter, &unstarted)
		destroy_attempt(dlist_container(Attempt, node, iter.cur));
}

/* Milliseconds until the next timed event, at most MAX_WAIT_MS. */
static long
compute_timeout(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz due = TimestampTzPlusMilliseconds(last_cycle, MAX_WAIT_MS);

	if (next_wakeup != 0 && next_wakeup < due &&
		n_in_flight < durable_max_concurrent_invocations)
		due = next_wakeup;
	if (next_stream_check != 0 && next_stream_check < due)
		due = next_stream_check;
	if (now >= due)
		return 0;
	return Min((long) TimestampDifferenceMilliseconds(now, due) + 1, MAX_WAIT_MS);
}

/*
 * Connects to durable.database.  If it does not exist, connecting fails
 * with FATAL and the postmaster restarts us: the next incarnation notices
 * (the flag in shared memory is still set), reports it once, and waits
 * for the database without a connection to it, looking every
 * DATABASE_POLL_MS; once it exists it exits to be restarted and connect.
 */
static void
connect_to_database(void)
{
	DispatcherStart *start = shared_state_dispatcher_start(my_slot);

	if (start->connecting)
	{
		BackgroundWorkerInitializeConnection(NULL, NULL, 0);
		if (!start->reported_missing_database)
		{
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_DATABASE),
					 errmsg("durable dispatcher %d: database \"%s\" does not exist",
							my_slot, durable_database),
					 errdetail("The dispatcher looks for it every %d seconds and starts once it exists.",
							   DATABASE_POLL_MS / 1000),
					 errhint("Create the database, or set durable.database to the database where CREATE EXTENSION durable was run, and restart the server.")));
			start->reported_missing_database = true;
		}
		for (;;)
		{
			bool		exists;

			CHECK_FOR_INTERRUPTS();
			StartTransactionCommand();
			exists = OidIsValid(get_database_oid(durable_database, true));
			CommitTransactionCommand();
			if (exists)
			{
				start->connecting = false;
				ereport(LOG,
						(errmsg("durable dispatcher %d: database \"%s\" exists now, restarting",
								my_slot, durable_database)));
				proc_exit(1);
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 DATABASE_POLL_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}

	start->connecting = true;
	BackgroundWorkerInitializeConnection(durable_database, NULL, 0);
	start->connecting = false;
	start->reported_missing_database = false;
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

	connect_to_database();

	durable_pin_worker_settings();

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
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(loop_cxt);
		old = MemoryContextSwitchTo(loop_cxt);

		/* Marks finished transfers; attempts are collected below. */
		while ((t = http_client_next_finished()) != NULL)
			;
		while (!dlist_is_empty(&unstarted))
		{
			Attempt    *a = dlist_container(Attempt, node, dlist_pop_head_node(&unstarted));

			dlist_push_tail(&in_flight, &a->node);
		}

		now = GetCurrentTimestamp();
		next_stream_check = watch_streams(now);

		/* Finished attempts, and streams on which new messages arrived. */
		{
			dlist_iter	iter;

			dlist_foreach(iter, &in_flight)
			{
				Attempt    *a = dlist_container(Attempt, node, iter.cur);

				if (attempt_has_news(a))
					finished = lappend(finished, a);
			}
		}

		if (now >= TimestampTzPlusMilliseconds(last_cycle, MAX_WAIT_MS) ||
			(next_wakeup != 0 && now >= next_wakeup &&
			 n_in_flight < durable_max_concurrent_invocations))
			need_cycle = true;

		if (finished != NIL || need_cycle)
		{
			List	   *completed_ids = NIL;
			bool		failed;
			List	   *claimed = run_cycle_guarded(finished, need_cycle,
													&completed_ids, &failed);
			ListCell   *lc;
			dlist_mutable_iter miter;

			need_cycle = false;
			last_cycle = GetCurrentTimestamp();
			if (failed)
				next_wakeup = TimestampTzPlusMilliseconds(last_cycle, ERROR_BACKOFF_MS);

			foreach(lc, completed_ids)
				shared_state_announce_completion((const char *) lfirst(lc));

			/*
			 * After a failed cycle nothing of it was stored: the attempts it
			 * handled are given up (their invocations are found again without
			 * a live attempt), and what it queued for streams is not sent.
			 */
			foreach(lc, finished)
			{
				Attempt    *a = (Attempt *) lfirst(lc);

				if (a->ended || failed)
					destroy_attempt(a);
				else
					a->last_activity = last_cycle;
			}
			dlist_foreach_modify(miter, &in_flight)
			{
				Attempt    *a = dlist_container(Attempt, node, miter.cur);

				if (!a->bidi)
					continue;
				if (failed)
					attempt_discard_queued(a);
				else
					(void) attempt_send_queued(a);
			}

			if (!OidIsValid(extension_oid) && !failed)
				abandon_attempts();

			foreach(lc, claimed)
				start_attempt((Attempt *) lfirst(lc));
			if (!dlist_is_empty(&unstarted))
				need_cycle = true;
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
