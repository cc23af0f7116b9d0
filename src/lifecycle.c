/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  The invocation state machine: every status transition of an
 *	  invocation after it was created happens here.
 *
 * An invocation is created ready (or scheduled, for a delayed send) by
 * durable.send in the sender's transaction.  From then on:
 *
 *	  ready, scheduled, backing-off --claim--> running
 *	  running --End--> completed
 *	  running --Suspension--> suspended, or ready if a notification it
 *		waits for is already journaled
 *	  running --failure, retries left--> backing-off
 *	  running --failure, retries exhausted or unretryable--> paused, or
 *		completed (failed) when the retry policy says kill
 *	  running --attempt lost (dispatcher restart, recording failed)--> ready
 *	  suspended --notification it waits for--> ready
 *
 * "pending" is not stored: it is a ready or scheduled exclusive invocation
 * of a virtual object or workflow that waits for its key's lock (the view
 * durable._invocation_queue says which).
 *
 * Each transition is checked against the table below before it is
 * written, and is guarded in SQL by the status it starts from: a
 * transition whose invocation is no longer in that status (an orphaned
 * attempt that was released meanwhile, say) does nothing.  Every
 * invocation is handled in a subtransaction of its own, and an error while
 * handling one becomes that invocation's recorded failure, so a bad
 * response or a bad row never takes the dispatcher down.
 *
 * Commands that other invocations or promises answer are handled in the
 * transaction that journals them: a Call or OneWayCall creates its
 * invocation (its id is journaled at once), a GetPromise, AttachInvocation
 * or Call whose answer is not there yet leaves a waiter row, and a
 * completion (of an invocation or a promise) turns the waiters it finds
 * into queued notifications.  Another invocation's row is never locked
 * while this one's is: what it must be told goes through the notification
 * queue, which dispatchers deliver through the same notification path as
 * timers and signals.
 *
 * Decoding responses is attempt.c's; storing is journal_store.c's.  Data
 * flows one way: response -> effects (attempt.c) -> transition (here) ->
 * storage (journal_store.c).
 *
 * IDENTIFICATION
 *	  src/lifecycle.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "constants.h"
#include "durable.h"
#include "journal_store.h"
#include "lifecycle.h"
#include "protocol.h"
#include "shared_state.h"

/* The edges of the state machine, as drawn in docs/architecture.md. */
typedef struct Transition
{
	const char *from;
	const char *to;
	const char *event;
} Transition;

static const Transition transitions[] = {
	{STATUS_READY, STATUS_RUNNING, "claim"},
	{STATUS_SCHEDULED, STATUS_RUNNING, "claim"},
	{STATUS_BACKING_OFF, STATUS_RUNNING, "claim"},
	{STATUS_RUNNING, STATUS_COMPLETED, "End, failure with retries exhausted (policy kill), or kill"},
	{STATUS_RUNNING, STATUS_SUSPENDED, "Suspension"},
	{STATUS_RUNNING, STATUS_READY, "Suspension already satisfied, or attempt lost"},
	{STATUS_RUNNING, STATUS_BACKING_OFF, "failure, retries left"},
	{STATUS_RUNNING, STATUS_PAUSED, "failure, retries exhausted or unretryable"},
	{STATUS_SUSPENDED, STATUS_READY, "notification it waits for"},
	{STATUS_PAUSED, STATUS_READY, "cancel: the handler unwinds"},
	{STATUS_READY, STATUS_COMPLETED, "cancel before it started, or kill"},
	{STATUS_SCHEDULED, STATUS_COMPLETED, "cancel before it started, or kill"},
	{STATUS_SUSPENDED, STATUS_COMPLETED, "kill"},
	{STATUS_BACKING_OFF, STATUS_COMPLETED, "kill"},
	{STATUS_PAUSED, STATUS_COMPLETED, "kill"},
};

/* The earliest timer journaled since lifecycle_take_earliest_new_timer. */
static TimestampTz earliest_new_timer = 0;

/* Shortest delay between two attempts, whatever a retry policy says. */
#define MIN_RETRY_DELAY_MS	10

/* How long a timer whose completion could not be journaled waits. */
#define TIMER_RETRY_MS		1000

/* How long an attempt whose failure could not be recorded waits. */
#define RELEASE_DELAY_MS	1000

static void
check_transition(const char *from, const char *to)
{
	for (size_t i = 0; i < lengthof(transitions); i++)
		if (strcmp(transitions[i].from, from) == 0 &&
			strcmp(transitions[i].to, to) == 0)
			return;
	elog(ERROR, "durable: invalid invocation status transition from %s to %s", from, to);
}

/*
 * Runs fn(arg) in a subtransaction.  Returns NULL on success, else the
 * error it raised (which has been rolled back), copied into the caller's
 * memory context.
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

/* Maps an error raised while handling an attempt to a failure code. */
static int
failure_code_for(int sqlerrcode)
{
	if (sqlerrcode == ERRCODE_FEATURE_NOT_SUPPORTED)
		return FAILURE_NOT_SUPPORTED;
	if (sqlerrcode == ERRCODE_PROTOCOL_VIOLATION)
		return FAILURE_PROTOCOL_VIOLATION;
	if (sqlerrcode == ERRCODE_PROGRAM_LIMIT_EXCEEDED)
		return FAILURE_TOO_LARGE;
	return FAILURE_INTERNAL;
}

/*
 * Exponential backoff: initial × factor^(failures - 1), at most the
 * policy's maximum.  Computed in floating point and clamped before it
 * becomes an integer, so no failure count can overflow it.
 */
static int64
backoff_ms(const RetryPolicy *p, int failures)
{
	double		factor = (p->factor >= 1.0 && p->factor <= 100.0) ? p->factor : 1.0;
	int64		max_ms = Max(p->max_interval_ms, MIN_RETRY_DELAY_MS);
	double		delay = (double) p->initial_interval_ms * pow(factor, Max(failures - 1, 0));

	if (!(delay < (double) max_ms))		/* also catches inf and NaN */
		return max_ms;
	return Max((int64) delay, MIN_RETRY_DELAY_MS);
}

static TimestampTz
after_ms(int64 ms)
{
	/* Timestamps end in year 294276; no delay we compute comes near. */
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), Min(ms, (int64) PG_INT32_MAX * 1000));
}

/*
 * The transition out of running for a failed attempt: backing-off while
 * retries are left, else paused, or completed with the failure when the
 * retry policy says kill.  Unretryable failures pause at once.
 */
static void
plan_failure(const Attempt *a, const InvocationRow *row, int appended,
			 int code, const char *message, int64 retry_delay_ms,
			 bool retryable, InvocationUpdate *u)
{
	int			failures = (appended > 0 ? 0 : row->retry_count_since_last_stored_entry);

	failures = (failures < PG_INT32_MAX) ? failures + 1 : failures;
	u->appended = appended;
	u->failed_attempts = 1;
	u->retry_count_since_last_stored_entry = failures;
	u->last_failure = message;
	u->last_failure_code = code;

	if (retryable && (a->retry.max_attempts <= 0 || failures < a->retry.max_attempts))
	{
		u->status = STATUS_BACKING_OFF;
		u->run_at = after_ms(retry_delay_ms >= 0 ? Max(retry_delay_ms, MIN_RETRY_DELAY_MS) :
							 backoff_ms(&a->retry, failures));
	}
	else if (retryable && a->retry.kill_on_max)
	{
		u->status = STATUS_COMPLETED;
		u->completed = true;
		u->completion_failed = true;
		u->completion_failure_code = code != 0 ? code : FAILURE_INTERNAL;
		u->completion_failure = message;
	}
	else
		u->status = STATUS_PAUSED;
	check_transition(STATUS_RUNNING, u->status);
}

/* ----------------------------------------------------------------------
 * Finishing an attempt
 * ----------------------------------------------------------------------
 */

typedef enum FinishResult
{
	FINISH_STALE,				/* the invocation is no longer ours */
	FINISH_COMPLETED,
	FINISH_OTHER
} FinishResult;

typedef struct FinishArgs
{
	Attempt    *attempt;
	int			slot;
	FinishResult result;
	bool		goes_on;		/* a streaming attempt that did not end */
	/* for recording a failure */
	int			code;
	const char *message;
	bool		retryable;
} FinishArgs;

/* Locks the row and checks that the attempt still owns the invocation. */
static bool
lock_own_attempt(FinishArgs *args, InvocationRow *row)
{
	*row = store_lock_invocation(args->attempt->invocation_id);
	if (!row->found || strcmp(row->status, STATUS_RUNNING) != 0 ||
		row->claimed_by != args->slot)
	{
		args->result = FINISH_STALE;
		return false;
	}
	return true;
}

/* How an invocation ended, as its callers and attachers are told. */
static NotificationResult
result_of(const InvocationUpdate *u)
{
	NotificationResult r = {0};

	if (u->completion_failed)
	{
		r.kind = RESULT_FAILURE;
		r.failure_code = (uint32) u->completion_failure_code;
		r.failure_message = u->completion_failure ? u->completion_failure : "";
		r.failure_metadata = u->completion_failure_metadata;
	}
	else
	{
		r.kind = RESULT_VALUE;
		r.value = u->output ? u->output : (const uint8 *) "";
		r.value_len = u->output ? u->output_len : 0;
	}
	return r;
}

/*
 * Queues a completion notification for another invocation.  It is never
 * appended here: that would lock the other invocation's row while holding
 * this one's, and two invocations waiting for each other could deadlock.
 */
static void
queue_completion(const char *invocation_id, uint16 type, uint32 completion_id,
				 const NotificationResult *result)
{
	size_t		len;
	uint8	   *raw = protocol_completion_notification(completion_id, result, &len);

	(void) store_queue_notification(invocation_id, type, 0, NULL, completion_id, raw, len);
	shared_state_wake_dispatchers_at_commit();
}

/*
 * What follows any completion, however it came: no timer outlives it;
 * whoever called or attached to it gets its result; a killed invocation's
 * call children are killed too (one-way sends live on); and a keyed
 * invocation's lock is free, so the next one in line may run.
 */
static void
after_completion(const char *invocation_id, bool keyed, const NotificationResult *result,
				 bool killed)
{
	ListCell   *lc;

	store_delete_timers(invocation_id);
	foreach(lc, store_take_invocation_waiters(invocation_id))
	{
		Waiter	   *w = lfirst(lc);

		queue_completion(w->invocation_id, w->entry_type, w->completion_id, result);
	}

	/*
	 * What a killed invocation still waited for.  (Waits left by one that
	 * ended otherwise go when what they wait for ends.)
	 */
	if (killed)
	{
		foreach(lc, store_take_waits_of(invocation_id))
		{
			Waiter	   *w = lfirst(lc);

			/* Not an invocation it merely found by idempotency key or workflow key. */
			if (w->entry_type == MSG_CALL_COMPLETION && w->started_by_waiter)
			{
				store_queue_kill(w->invocation_id);
				shared_state_wake_dispatchers_at_commit();
			}
		}
	}
	if (keyed)
		shared_state_wake_dispatchers_at_commit();
}

static void
completed(Attempt *a, const InvocationUpdate *u, FinishArgs *args)
{
	NotificationResult r = result_of(u);

	after_completion(a->invocation_id, a->service_key != NULL, &r, false);
	args->result = FINISH_COMPLETED;
}

/* ----------------------------------------------------------------------
 * Commands answered by the runtime: calls, promises, attachments
 * ----------------------------------------------------------------------
 */

/* A notification the runtime journals for this attempt's invocation. */
static void
add_runtime_notification(AttemptEffects *fx, uint16 type, uint32 completion_id,
						 const NotificationResult *result)
{
	NewEntry   *e = palloc0(sizeof(NewEntry));

	e->type = type;
	e->completion_id = completion_id;
	e->raw = protocol_completion_notification(completion_id, result, &e->len);
	fx->entries = lappend(fx->entries, e);
}

static NotificationResult
failure_result(int code, const char *message)
{
	NotificationResult r = {RESULT_FAILURE};

	r.failure_code = (uint32) code;
	r.failure_message = message;
	return r;
}

/*
 * What target's row says of its end, its row locked FOR SHARE so that it
 * cannot end between this look and a wait registered after it.  Returns
 * false, with a void result, while it has not ended; a target that does
 * not exist has "ended" with failure 404.
 */
static bool
ended_with(const char *target, NotificationResult *result)
{
	InvocationResult r = store_invocation_result(target);

	memset(result, 0, sizeof(NotificationResult));
	if (!r.found)
		*result = failure_result(FAILURE_NOT_FOUND,
								 psprintf("invocation %s not found", target));
	else if (!r.completed)
		result->kind = RESULT_VOID;
	else if (r.failed)
	{
		*result = failure_result(r.failure_code, r.failure_message ? r.failure_message : "");
		result->failure_metadata = r.failure_metadata;
	}
	else
	{
		result->kind = RESULT_VALUE;
		result->value = r.output ? (const uint8 *) VARDATA(r.output) : (const uint8 *) "";
		result->value_len = r.output ? VARSIZE(r.output) - VARHDRSZ : 0;
	}
	return !r.found || r.completed;
}

/*
 * waiter gets target's result as notification type/completion_id: now if
 * target has ended, else when it does.
 */
static void
wait_for_invocation(const char *waiter, const char *target, uint16 type,
					uint32 completion_id, AttemptEffects *fx)
{
	NotificationResult result;

	if (ended_with(target, &result))
		add_runtime_notification(fx, type, completion_id, &result);
	else
		store_add_invocation_waiter(target, waiter, completion_id, type);
}

typedef struct CreateArgs
{
	OutgoingCall *call;
	const char *parent_id;
	const char *root_id;
	char	   *created_id;
} CreateArgs;

static void
create_fn(void *arg)
{
	CreateArgs *args = arg;

	args->created_id = store_create_invocation(args->call, args->parent_id, args->root_id);
}

/* The failure code a call that could not start is answered with. */
static int
call_failure_code(int sqlerrcode)
{
	if (sqlerrcode == ERRCODE_UNDEFINED_OBJECT || sqlerrcode == ERRCODE_UNDEFINED_FUNCTION)
		return FAILURE_NOT_FOUND;
	if (sqlerrcode == ERRCODE_INVALID_PARAMETER_VALUE ||
		sqlerrcode == ERRCODE_NULL_VALUE_NOT_ALLOWED)
		return FAILURE_BAD_REQUEST;
	return FAILURE_INTERNAL;
}

/*
 * A Call or OneWayCall: the invocation it starts is created in this
 * transaction, its id journaled for the caller, and a Call's caller waits
 * for its end.  A target that cannot be invoked (unknown service, missing
 * key) fails the call, not the caller's attempt.
 */
static void
start_call(Attempt *a, const InvocationRow *row, OutgoingCall *c, AttemptEffects *fx)
{
	CreateArgs	args = {c, a->invocation_id, row->root_id, NULL};
	ErrorData  *edata = in_subtransaction(create_fn, &args);
	NotificationResult r = {0};

	if (edata != NULL)
	{
		r = failure_result(call_failure_code(edata->sqlerrcode),
						   attempt_text(edata->message, strlen(edata->message)));
		add_runtime_notification(fx, MSG_CALL_INVOCATION_ID_COMPLETION,
								 c->invocation_id_completion, &r);
		if (c->result_completion != 0)
			add_runtime_notification(fx, MSG_CALL_COMPLETION, c->result_completion, &r);
		return;
	}
	c->command->invoked_id = args.created_id;
	c->command->invoked_target = psprintf("%s/%s%s%s", c->service_name, c->key,
										  c->key[0] != '\0' ? "/" : "", c->handler_name);
	r.kind = RESULT_INVOCATION_ID;
	r.invocation_id = args.created_id;
	add_runtime_notification(fx, MSG_CALL_INVOCATION_ID_COMPLETION,
							 c->invocation_id_completion, &r);
	if (c->result_completion != 0)
		wait_for_invocation(a->invocation_id, args.created_id, MSG_CALL_COMPLETION,
							c->result_completion, fx);
	/* durable._enqueue has woken the dispatchers for a new invocation. */
}

/* Everyone waiting for a promise that was just completed is told. */
static void
notify_promise_waiters(const char *service, const char *key, const char *name,
					   const NotificationResult *result)
{
	ListCell   *lc;

	foreach(lc, store_take_promise_waiters(service, key, name))
	{
		Waiter	   *w = lfirst(lc);

		queue_completion(w->invocation_id, MSG_GET_PROMISE_COMPLETION, w->completion_id, result);
	}
}

static void
answer_lookup(Attempt *a, CommandLookup *l, AttemptEffects *fx)
{
	NotificationResult r = {RESULT_VOID};

	switch (l->kind)
	{
		case LOOKUP_GET_PROMISE:
		case LOOKUP_PEEK_PROMISE:
		case LOOKUP_COMPLETE_PROMISE:
			{
				PromiseRow	p = store_lock_promise(a->service_name, a->service_key,
												   l->promise_name);

				if (l->kind == LOOKUP_COMPLETE_PROMISE)
				{
					if (p.completed)
						r = failure_result(FAILURE_CONFLICT,
										   psprintf("promise \"%s\" is already completed",
													l->promise_name));
					else
					{
						store_complete_promise(a->service_name, a->service_key,
											   l->promise_name, &l->promise_result);
						notify_promise_waiters(a->service_name, a->service_key,
											   l->promise_name, &l->promise_result);
					}
				}
				else if (p.completed)
					r = p.result;
				else if (l->kind == LOOKUP_GET_PROMISE)
				{
					store_add_promise_waiter(a->service_name, a->service_key,
											 l->promise_name, a->invocation_id,
											 l->completion_id);
					return;
				}
				add_runtime_notification(fx, l->notification_type, l->completion_id, &r);
				return;
			}
		case LOOKUP_ATTACH:
		case LOOKUP_GET_OUTPUT:
			{
				char	   *target = l->target_id;

				if (target == NULL)
					target = store_find_invocation(l->target_service, l->target_key,
												   l->target_handler,
												   l->target_idempotency_key);
				if (target == NULL)
				{
					r = failure_result(FAILURE_NOT_FOUND, "invocation not found");
					add_runtime_notification(fx, l->notification_type, l->completion_id, &r);
				}
				else if (l->kind == LOOKUP_ATTACH)
					wait_for_invocation(a->invocation_id, target, l->notification_type,
										l->completion_id, fx);
				else
				{
					/* Its result now, or void while it runs. */
					(void) ended_with(target, &r);
					add_runtime_notification(fx, l->notification_type, l->completion_id, &r);
				}
				return;
			}
	}
}

static void
apply_effects(Attempt *a, const InvocationRow *row, AttemptEffects *fx,
			  FinishArgs *args)
{
	InvocationUpdate u = {0};
	int			appended;
	ListCell   *lc;

	/* These may add the notifications that answer them at once. */
	foreach(lc, fx->calls)
		start_call(a, row, (OutgoingCall *) lfirst(lc), fx);
	foreach(lc, fx->lookups)
		answer_lookup(a, (CommandLookup *) lfirst(lc), fx);
	appended = list_length(fx->entries);
	store_append_entries(a->invocation_id, row->journal_size, fx->entries);
	if (fx->state_writes != NIL)
		store_write_state(a->service_name, a->service_key, fx->state_writes);
	store_add_timers(a->invocation_id, fx->timers);
	foreach(lc, fx->timers)
	{
		TimestampTz at = ((NewTimer *) lfirst(lc))->wake_at;

		if (at != DT_NOEND && (earliest_new_timer == 0 || at < earliest_new_timer))
			earliest_new_timer = at;
	}
	foreach(lc, fx->signals)
		(void) store_queue_signal((OutgoingSignal *) lfirst(lc));
	if (fx->signals != NIL)
		shared_state_wake_dispatchers_at_commit();

	/* A streaming attempt goes on: no transition, the journal grew. */
	if (fx->end == ATTEMPT_END_NONE)
	{
		if (appended > 0)
			store_note_appended(a->invocation_id, appended);
		args->goes_on = true;
		return;
	}

	u.appended = appended;
	u.retry_count_since_last_stored_entry = appended > 0 ? 0 : -1;
	switch (fx->end)
	{
		case ATTEMPT_END_NONE:
			pg_unreachable();
		case ATTEMPT_END_COMPLETED:
			u.status = STATUS_COMPLETED;
			u.completed = true;
			u.completion_failed = fx->output_failed;
			u.output = fx->output_failed ? NULL : fx->output;
			u.output_len = fx->output_len;
			u.completion_failure_code = fx->output_failure_code;
			u.completion_failure = fx->output_failure_message;
			u.completion_failure_metadata = fx->output_failure_metadata;
			break;
		case ATTEMPT_END_SUSPENDED:
			if (store_has_notification(a->invocation_id, &fx->waits))
			{
				u.status = STATUS_READY;
				u.run_at = GetCurrentTransactionStartTimestamp();
			}
			else
			{
				u.status = STATUS_SUSPENDED;
				u.waits = fx->waits;
			}
			break;
		case ATTEMPT_END_FAILED:
			plan_failure(a, row, appended, fx->failure_code, fx->failure_message,
						 fx->retry_delay_ms, true, &u);
			break;
	}
	check_transition(STATUS_RUNNING, u.status);
	store_update_invocation(a->invocation_id, &u);
	if (u.completed)
		completed(a, &u, args);
}

static void
finish_fn(void *arg)
{
	FinishArgs *args = arg;
	Attempt    *a = args->attempt;
	InvocationRow row;
	AttemptEffects fx;

	args->result = FINISH_OTHER;
	if (!lock_own_attempt(args, &row))
		return;
	attempt_decode_response(a, &fx);
	apply_effects(a, &row, &fx, args);
}

static void
record_failure_fn(void *arg)
{
	FinishArgs *args = arg;
	InvocationRow row;
	InvocationUpdate u = {0};

	args->result = FINISH_OTHER;
	if (!lock_own_attempt(args, &row))
		return;
	plan_failure(args->attempt, &row, 0, args->code, args->message, -1,
				 args->retryable, &u);
	store_update_invocation(args->attempt->invocation_id, &u);
	if (u.completed)
		completed(args->attempt, &u, args);
}

/*
 * The last resort when even recording a failure failed: make the
 * invocation runnable again a little later, leaving everything else as it
 * is.  If this fails too, lifecycle_release_orphans finds the invocation.
 */
static void
release_fn(void *arg)
{
	FinishArgs *args = arg;
	InvocationRow row;
	InvocationUpdate u = {0};

	if (!lock_own_attempt(args, &row))
		return;
	u.status = STATUS_READY;
	u.retry_count_since_last_stored_entry = -1;
	u.run_at = after_ms(RELEASE_DELAY_MS);
	check_transition(STATUS_RUNNING, u.status);
	store_update_invocation(args->attempt->invocation_id, &u);
}

/* Records a failure of an attempt, in subtransactions; never raises. */
static FinishResult
record_failure(Attempt *a, int slot, int code, const char *message, bool retryable)
{
	FinishArgs	args = {a, slot, FINISH_OTHER, false, code, message, retryable};
	ErrorData  *edata = in_subtransaction(record_failure_fn, &args);

	if (edata == NULL)
		return args.result;
	ereport(WARNING,
			(errmsg("durable: could not record the failed attempt of invocation %s: %s",
					a->invocation_id, edata->message),
			 errdetail_internal("The attempt failed with: %s", message)));
	edata = in_subtransaction(release_fn, &args);
	if (edata != NULL)
		ereport(WARNING,
				(errmsg("durable: could not release invocation %s: %s",
						a->invocation_id, edata->message),
				 errdetail("It is made runnable again when its dispatcher next looks for lost attempts.")));
	return FINISH_OTHER;
}

bool
lifecycle_finish_attempt(Attempt *a, int slot)
{
	FinishArgs	args = {a, slot, FINISH_OTHER, false, 0, NULL, true};
	ErrorData  *edata;

	/* Unless a streaming attempt goes on, this is its end. */
	a->ended = true;
	if (a->uri == NULL)
		return record_failure(a, slot, FAILURE_NOT_FOUND,
							  psprintf("service \"%s\" is no longer registered", a->service_name),
							  true) == FINISH_COMPLETED;

	edata = in_subtransaction(finish_fn, &args);
	if (edata == NULL)
	{
		if (args.goes_on && args.result != FINISH_STALE)
			a->ended = false;
		if (args.result == FINISH_STALE)
			ereport(LOG,
					(errmsg("durable: discarded the response of an attempt of invocation %s, which is no longer running on this dispatcher",
							a->invocation_id)));
		return args.result == FINISH_COMPLETED;
	}

	/*
	 * Nothing of this response was kept.  Unsupported commands fail every
	 * retry the same way: pause at once.
	 */
	return record_failure(a, slot, failure_code_for(edata->sqlerrcode),
						  attempt_text(edata->message, strlen(edata->message)),
						  edata->sqlerrcode != ERRCODE_FEATURE_NOT_SUPPORTED) == FINISH_COMPLETED;
}

/* ----------------------------------------------------------------------
 * Claiming
 * ----------------------------------------------------------------------
 */

static void
load_fn(void *arg)
{
	Attempt    *a = arg;

	store_load_attempt(a, (int64) durable_max_journal_size);
	attempt_prepare_request(a);
}

List *
lifecycle_claim(int slot, int limit, MemoryContext attempt_parent,
				MemoryContext list_cxt)
{
	List	   *claimed = store_claim(slot, limit, attempt_parent, CurrentMemoryContext);
	List	   *loaded = NIL;
	ListCell   *lc;

	foreach(lc, claimed)
	{
		Attempt    *a = lfirst(lc);
		ErrorData  *edata;
		MemoryContext old;

		if (a->uri == NULL)
		{
			record_failure(a, slot, FAILURE_NOT_FOUND,
						   psprintf("service \"%s\" is no longer registered", a->service_name),
						   true);
			attempt_destroy(a);
			continue;
		}
		edata = in_subtransaction(load_fn, a);
		if (edata != NULL)
		{
			int			code = failure_code_for(edata->sqlerrcode);

			/*
			 * A journal too large to send stays too large, a corrupt row
			 * stays corrupt: pause them rather than retry.
			 */
			record_failure(a, slot, code,
						   psprintf("could not start an attempt: %s", edata->message),
						   code != FAILURE_TOO_LARGE &&
						   edata->sqlerrcode != ERRCODE_DATA_CORRUPTED);
			attempt_destroy(a);
			continue;
		}
		old = MemoryContextSwitchTo(list_cxt);
		loaded = lappend(loaded, a);
		MemoryContextSwitchTo(old);
	}
	return loaded;
}

/* ----------------------------------------------------------------------
 * Notifications and timers
 * ----------------------------------------------------------------------
 */

static bool
int4_array_contains(ArrayType *array, uint32 value)
{
	Datum	   *items;
	bool	   *nulls;
	int			n;

	if (array == NULL || value == 0)
		return false;
	deconstruct_array(array, INT4OID, 4, true, TYPALIGN_INT, &items, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i] && (uint32) DatumGetInt32(items[i]) == value)
			return true;
	return false;
}

static bool
text_array_contains(ArrayType *array, const char *value)
{
	Datum	   *items;
	bool	   *nulls;
	int			n;

	if (array == NULL || value == NULL)
		return false;
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i] && strcmp(TextDatumGetCString(items[i]), value) == 0)
			return true;
	return false;
}

/*
 * Appends a notification to an invocation whose row is locked (row) and
 * not completed.  It resumes a suspended invocation waiting for exactly
 * this notification, and a paused one that is cancelled (it runs again to
 * unwind); otherwise the invocation finds it in its journal next time.
 */
static void
append_notification(const char *invocation_id, const InvocationRow *row,
					NewEntry *entry)
{
	bool		resumes;

	Assert(MSG_IS_NOTIFICATION(entry->type));
	store_append_entries(invocation_id, row->journal_size, list_make1(entry));

	if (strcmp(row->status, STATUS_SUSPENDED) == 0)
		resumes = int4_array_contains(row->waiting_completions, entry->completion_id) ||
			int4_array_contains(row->waiting_signals, entry->signal_id) ||
			text_array_contains(row->waiting_named_signals, entry->signal_name);
	else
		resumes = strcmp(row->status, STATUS_PAUSED) == 0 &&
			entry->type == MSG_SIGNAL_NOTIFICATION && entry->signal_id == SIGNAL_CANCEL;

	if (resumes)
	{
		InvocationUpdate u = {0};

		check_transition(row->status, STATUS_READY);
		u.status = STATUS_READY;
		u.appended = 1;
		u.retry_count_since_last_stored_entry = 0;
		u.run_at = GetCurrentTransactionStartTimestamp();
		store_update_invocation(invocation_id, &u);
		shared_state_wake_dispatchers_at_commit();
	}
	else
	{
		store_note_appended(invocation_id, 1);
		/* A streaming attempt may be waiting for it: its dispatcher sends it. */
		if (strcmp(row->status, STATUS_RUNNING) == 0)
			shared_state_wake_dispatchers_at_commit();
	}
}

void
lifecycle_notify(const char *invocation_id, NewEntry *entry)
{
	InvocationRow row = store_lock_invocation(invocation_id);

	if (!row.found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invocation \"%s\" not found", invocation_id)));
	if (strcmp(row.status, STATUS_COMPLETED) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invocation \"%s\" is completed", invocation_id)));
	append_notification(invocation_id, &row, entry);
}

/*
 * The timer is deleted in the same subtransaction that journals its
 * completion: if journaling fails, the timer is still there.
 */
static void
fire_timer_fn(void *arg)
{
	DueTimer   *t = arg;
	NotificationResult done = {RESULT_VOID};
	NewEntry	e = {0};

	e.type = MSG_SLEEP_COMPLETION;
	e.completion_id = t->completion_id;
	e.raw = protocol_completion_notification(t->completion_id, &done, &e.len);
	store_delete_timer(t);
	lifecycle_notify(t->invocation_id, &e);
}

/*
 * Ends an invocation with failure 409 without asking its service: a kill,
 * or the cancellation of one that never started.  An attempt still in
 * flight finds the invocation completed and is discarded.
 */
static void
end_invocation(const char *invocation_id, const InvocationRow *row, const char *why,
			   bool killed)
{
	InvocationUpdate u = {0};
	NotificationResult r;

	check_transition(row->status, STATUS_COMPLETED);
	u.status = STATUS_COMPLETED;
	u.retry_count_since_last_stored_entry = -1;
	u.completed = true;
	u.completion_failed = true;
	u.completion_failure_code = FAILURE_CONFLICT;
	u.completion_failure = why;
	store_update_invocation(invocation_id, &u);
	r = result_of(&u);
	after_completion(invocation_id, row->keyed, &r, killed);
}

typedef struct DeliverArgs
{
	QueuedNotification *signal;
	bool		completed;
} DeliverArgs;

/*
 * Delivers one queued signal, cancellation or kill.  One for an invocation
 * that no longer exists or has completed, or a second completion of the
 * same awakeable, is dropped: there is nobody left to tell.
 */
/*
 * A promise completed from SQL (durable.resolve_promise): completed now,
 * unless a handler completed it first, and its waiters told.
 */
static void
deliver_promise(QueuedNotification *s)
{
	PromiseRow	p = store_lock_promise(s->service_name, s->service_key, s->promise_name);
	NotificationResult result;

	if (p.completed)
	{
		ereport(LOG,
				(errmsg("durable: dropped a completion of promise \"%s\" of %s/%s from SQL, which a handler completed first",
						s->promise_name, s->service_name, s->service_key)));
		return;
	}
	if (!protocol_decode_result((const uint8 *) VARDATA_ANY(s->raw),
								VARSIZE_ANY_EXHDR(s->raw), &result))
		elog(ERROR, "queued completion of promise \"%s\" is corrupt", s->promise_name);
	store_complete_promise(s->service_name, s->service_key, s->promise_name, &result);
	notify_promise_waiters(s->service_name, s->service_key, s->promise_name, &result);
}

/*
 * Delivers one queued notification, cancellation, kill or promise
 * completion.  One for an invocation that no longer exists or has
 * completed, or a second completion of the same awakeable or completion
 * id, is dropped: there is nobody left to tell.
 */
static void
deliver_signal_fn(void *arg)
{
	DeliverArgs *args = arg;
	QueuedNotification *s = args->signal;
	InvocationRow row;
	NewEntry	e = {0};

	args->completed = false;
	store_delete_signal(s->id);
	if (strcmp(s->action, "promise") == 0)
	{
		deliver_promise(s);
		return;
	}
	row = store_lock_invocation(s->invocation_id);
	if (!row.found || strcmp(row.status, STATUS_COMPLETED) == 0)
		return;
	if (strcmp(s->action, "kill") == 0)
	{
		/* A running invocation too: its attempt in flight is discarded. */
		end_invocation(s->invocation_id, &row, "killed", true);
		args->completed = true;
		return;
	}
	if (s->signal_index == SIGNAL_CANCEL && !row.started)
	{
		end_invocation(s->invocation_id, &row, "canceled", false);
		args->completed = true;
		return;
	}
	if (s->signal_index != 0 || s->completion_id != 0)
	{
		WaitSet		w = {0};

		if (s->signal_index != 0)
		{
			w.n_signals = 1;
			w.signals = &s->signal_index;
		}
		else
		{
			w.n_completions = 1;
			w.completions = &s->completion_id;
		}
		if (store_has_notification(s->invocation_id, &w))
			return;
	}
	e.type = s->entry_type;
	e.signal_id = s->signal_index;
	e.signal_name = s->signal_name;
	e.completion_id = s->completion_id;
	e.raw = (const uint8 *) VARDATA_ANY(s->raw);
	e.len = VARSIZE_ANY_EXHDR(s->raw);
	append_notification(s->invocation_id, &row, &e);
}

static void
postpone_signal_fn(void *arg)
{
	store_postpone_signal(((QueuedNotification *) arg)->id, TIMER_RETRY_MS);
}

List *
lifecycle_deliver_signals(int limit)
{
	ListCell   *lc;
	List	   *completed_ids = NIL;

	foreach(lc, store_due_signals(limit))
	{
		QueuedNotification *s = lfirst(lc);
		DeliverArgs args = {s, false};
		ErrorData  *edata = in_subtransaction(deliver_signal_fn, &args);

		if (edata == NULL)
		{
			if (args.completed)
				completed_ids = lappend(completed_ids, s->invocation_id);
			continue;
		}
		ereport(WARNING,
				(errmsg("durable: could not deliver a queued %s to %s: %s",
						s->action, s->invocation_id ? s->invocation_id :
						psprintf("%s/%s", s->service_name, s->service_key),
						edata->message),
				 errdetail("It is kept and tried again in %d ms.", TIMER_RETRY_MS)));
		edata = in_subtransaction(postpone_signal_fn, s);
		if (edata != NULL)
			ereport(WARNING,
					(errmsg("durable: could not postpone a queued %s: %s",
							s->action, edata->message)));
	}
	return completed_ids;
}

static void
postpone_timer_fn(void *arg)
{
	store_postpone_timer((DueTimer *) arg, TIMER_RETRY_MS);
}

void
lifecycle_fire_due_timers(int limit)
{
	ListCell   *lc;

	foreach(lc, store_due_timers(limit))
	{
		DueTimer   *t = lfirst(lc);
		ErrorData  *edata = in_subtransaction(fire_timer_fn, t);

		if (edata == NULL)
			continue;
		ereport(WARNING,
				(errmsg("durable: could not journal the timer %u of invocation %s: %s",
						t->completion_id, t->invocation_id, edata->message),
				 errdetail("The timer is kept and fires again in %d ms.", TIMER_RETRY_MS)));
		edata = in_subtransaction(postpone_timer_fn, t);
		if (edata != NULL)
			ereport(WARNING,
					(errmsg("durable: could not postpone the timer %u of invocation %s: %s",
							t->completion_id, t->invocation_id, edata->message)));
	}
}

/*
 * Queues on each streaming attempt the notifications its invocation's
 * journal gained that its service was not sent yet (from its cursor on):
 * those this dispatcher journaled in this transaction, and those other
 * transactions committed.  They are sent after commit.
 */
void
lifecycle_queue_stream_notifications(List *attempts)
{
	int			n = list_length(attempts);
	const char **ids;
	int		   *cursors;
	Attempt   **which;
	int			i = 0;
	ListCell   *lc;

	if (n == 0)
		return;
	ids = palloc(sizeof(char *) * n);
	cursors = palloc(sizeof(int) * n);
	which = palloc(sizeof(Attempt *) * n);
	foreach(lc, attempts)
	{
		Attempt    *a = lfirst(lc);

		ids[i] = a->invocation_id;
		cursors[i] = a->journal_cursor;
		which[i] = a;
		i++;
	}
	foreach(lc, store_notifications_since(n, ids, cursors))
	{
		StoredNotification *e = lfirst(lc);
		Attempt    *a = which[e->which];

		attempt_queue_notification(a, e->type, VARDATA_ANY(e->raw),
								   VARSIZE_ANY_EXHDR(e->raw));
		a->pending_cursor = Max(a->pending_cursor, e->index + 1);
	}
}

/* ----------------------------------------------------------------------
 * Lost attempts
 * ----------------------------------------------------------------------
 */

int
lifecycle_release_orphans(int slot, int nworkers, List *live_ids)
{
	return store_release_orphans(slot, nworkers, live_ids);
}

TimestampTz
lifecycle_take_earliest_new_timer(void)
{
	TimestampTz t = earliest_new_timer;

	earliest_new_timer = 0;
	return t;
}

TimestampTz
lifecycle_next_wakeup(void)
{
	return store_next_wakeup();
}
