/*-------------------------------------------------------------------------
 *
 * journal_store.h
 *	  Storage of invocations, journals, state and timers for the runtime:
 *	  each function runs one or a few prepared statements and decides
 *	  nothing.
 *
 * All functions run inside a transaction with SPI connected; the caller
 * owns transaction boundaries.  Which status an invocation moves to, and
 * when, is lifecycle.c's business.
 *
 * IDENTIFICATION
 *	  src/journal_store.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_JOURNAL_STORE_H
#define DURABLE_JOURNAL_STORE_H

#include "postgres.h"

#include "utils/array.h"

#include "attempt.h"

/* Forgets every prepared statement (the extension was dropped). */
extern void store_forget_plans(void);

/* The extension's oid in this database, InvalidOid if not installed. */
extern Oid	store_extension_oid(void);

/* One row of durable.invocation, as the state machine needs it. */
typedef struct InvocationRow
{
	bool		found;
	char	   *status;
	int			claimed_by;		/* -1: NULL */
	int			journal_size;
	int			retry_count_since_last_stored_entry;
	bool		started;		/* an attempt ever ran (running_at set) */
	bool		keyed;			/* a virtual object or workflow */
	ArrayType  *waiting_completions;	/* NULL if none */
	ArrayType  *waiting_signals;
	ArrayType  *waiting_named_signals;
	char	   *root_id;		/* its call tree's root (itself if none) */
} InvocationRow;

/* Locks an invocation's row (FOR UPDATE) and reads it. */
extern InvocationRow store_lock_invocation(const char *invocation_id);

/*
 * The new values of an invocation's row at the end of an attempt or when a
 * notification arrives; store_update_invocation writes them in one UPDATE.
 */
typedef struct InvocationUpdate
{
	const char *status;
	int			appended;		/* entries added to the journal */
	int			retry_count_since_last_stored_entry;	/* -1: unchanged */
	int			failed_attempts;	/* added to retry_count */
	TimestampTz run_at;			/* 0: NULL */
	bool		keep_claim;		/* else claimed_by = NULL */
	/* suspended: what it waits for (none: the columns become NULL) */
	WaitSet		waits;
	/* a failed attempt */
	const char *last_failure;	/* NULL: unchanged */
	int			last_failure_code;
	/* completed */
	bool		completed;
	bool		completion_failed;
	const uint8 *output;		/* NULL: none */
	size_t		output_len;
	int			completion_failure_code;
	const char *completion_failure;
	FailureMetadata completion_failure_metadata;
} InvocationUpdate;

extern void store_update_invocation(const char *invocation_id,
									const InvocationUpdate *u);

/* A journal grew by appended entries while its status stays as it is. */
extern void store_note_appended(const char *invocation_id, int appended);

/* Appends entries at first_index, first_index + 1, ... in one statement. */
extern void store_append_entries(const char *invocation_id, int first_index,
								 List *entries);
extern void store_write_state(const char *service, const char *key,
							  List *writes);
extern void store_add_timers(const char *invocation_id, List *timers);
extern void store_delete_timers(const char *invocation_id);

/*
 * Signals waiting to be delivered (durable.notification_queue): queued by a
 * handler's command or from SQL, delivered by a dispatcher.  Queuing an
 * indexed signal (an awakeable) that is queued already does nothing and
 * returns false.
 */
extern bool store_queue_signal(const OutgoingSignal *s);

extern bool store_queue_notification(const char *invocation_id, uint16 entry_type,
									 uint32 signal_index, const char *signal_name,
									 uint32 completion_id, const uint8 *raw, size_t len);
extern void store_queue_kill(const char *invocation_id);

typedef struct QueuedNotification
{
	int64		id;
	char	   *action;			/* "notify", "kill" or "promise" */
	char	   *invocation_id;	/* NULL for "promise" */
	uint16		entry_type;
	uint32		signal_index;	/* 0: named, or a completion */
	char	   *signal_name;
	uint32		completion_id;
	bytea	   *raw;
	/* "promise": which one */
	char	   *service_name;
	char	   *service_key;
	char	   *promise_name;
} QueuedNotification;
extern List *store_due_signals(int limit);
extern void store_delete_signal(int64 id);
extern void store_postpone_signal(int64 id, int ms);

/*
 * Creates the invocation a Call or OneWayCall starts (through
 * durable._enqueue, which validates the target and applies idempotency
 * keys and workflow run-once) and returns its id: a new one, or the one it
 * repeats.
 */
extern char *store_create_invocation(const OutgoingCall *c, const char *parent_id,
									 const char *root_id);

/* An invocation's result, its row locked FOR SHARE. */
typedef struct InvocationResult
{
	bool		found;
	bool		completed;
	bool		failed;
	bytea	   *output;			/* NULL: none */
	int			failure_code;
	char	   *failure_message;
	FailureMetadata failure_metadata;
} InvocationResult;
extern InvocationResult store_invocation_result(const char *invocation_id);

/*
 * The invocation with this idempotency key, or (handler NULL) the run of
 * the workflow with this key; NULL if none.
 */
extern char *store_find_invocation(const char *service, const char *key,
								   const char *handler, const char *idempotency_key);

/* Who waits for what: invocation_waiter and promise_waiter rows. */
typedef struct Waiter
{
	char	   *invocation_id;	/* the waiter, or (store_take_waits_of) the awaited */
	uint32		completion_id;
	uint16		entry_type;
	bool		started_by_waiter;	/* store_take_waits_of: its own call child */
} Waiter;
extern void store_add_invocation_waiter(const char *invocation_id, const char *waiter_id,
										uint32 completion_id, uint16 entry_type);
extern List *store_take_invocation_waiters(const char *invocation_id);
extern List *store_take_waits_of(const char *waiter_id);

/* A workflow promise, its row locked (created if need be). */
typedef struct PromiseRow
{
	bool		completed;
	NotificationResult result;
} PromiseRow;
extern PromiseRow store_lock_promise(const char *service, const char *key, const char *name);
extern void store_complete_promise(const char *service, const char *key, const char *name,
								   const NotificationResult *result);
extern void store_add_promise_waiter(const char *service, const char *key, const char *name,
									 const char *waiter_id, uint32 completion_id);
extern List *store_take_promise_waiters(const char *service, const char *key,
										const char *name);

/* Is a notification for any of these ids in the journal? */
extern bool store_has_notification(const char *invocation_id,
								   const WaitSet *waits);

/* A claimed invocation: its row's fields the attempt needs. */
extern List *store_claim(int worker, int limit, MemoryContext attempt_parent,
						 MemoryContext list_cxt);

/*
 * Loads state and journal into the attempt.  Raises an error if the journal
 * is larger than max_bytes (ERRCODE_PROGRAM_LIMIT_EXCEEDED).
 */
extern void store_load_attempt(Attempt *a, int64 max_bytes);

/*
 * The notifications in the journals of n invocations from index cursors[i]
 * on, in journal order; which is the position of the invocation in ids.
 */
typedef struct StoredNotification
{
	int			which;
	int			index;
	uint16		type;
	bytea	   *raw;
} StoredNotification;
extern List *store_notifications_since(int n, const char **ids, const int *cursors);

/* Running invocations of this slot with no live attempt become ready. */
extern int	store_release_orphans(int worker, int nworkers, List *live_ids);

/* Due timers, locked (SKIP LOCKED): a List of DueTimer. */
typedef struct DueTimer
{
	char	   *invocation_id;
	uint32		completion_id;
} DueTimer;
extern List *store_due_timers(int limit);
extern void store_delete_timer(const DueTimer *t);
extern void store_postpone_timer(const DueTimer *t, int ms);

/* Forgets idempotency keys whose retention has passed; returns how many. */
extern int	store_expire_idempotency_keys(int limit);

/*
 * Frees the keys of workflow runs whose completion retention has passed
 * (their promises and state go too); returns how many.
 */
extern int	store_expire_workflows(int limit);

/* Next time something becomes runnable without a wake-up; 0 if none. */
extern TimestampTz store_next_wakeup(void);

#endif							/* DURABLE_JOURNAL_STORE_H */
