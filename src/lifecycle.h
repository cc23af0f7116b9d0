/*-------------------------------------------------------------------------
 *
 * lifecycle.h
 *	  The invocation state machine: every status transition of an
 *	  invocation after it was created happens here.
 *
 * IDENTIFICATION
 *	  src/lifecycle.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_LIFECYCLE_H
#define DURABLE_LIFECYCLE_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "attempt.h"

/*
 * All of these run inside the caller's transaction with SPI connected.
 * Each invocation is handled in a subtransaction of its own: an error while
 * handling one is recorded as that invocation's failure and never escapes.
 */

/*
 * ready | scheduled | backing-off -> running: claims up to limit runnable
 * invocations for dispatcher slot, loads their journals and prepares their
 * requests.  Returns the attempts to send (allocated in list_cxt; each
 * attempt in its own context under attempt_parent).  An invocation that
 * cannot be loaded is failed right away and not returned.
 */
extern List *lifecycle_claim(int slot, int limit, MemoryContext attempt_parent,
							 MemoryContext list_cxt);

/*
 * running -> completed | suspended | ready | backing-off | paused: applies
 * a finished attempt, or what a streaming attempt sent so far (the
 * invocation stays running while it goes on).  Sets a->ended unless a
 * streaming attempt goes on.  Returns true if the invocation completed.
 */
extern bool lifecycle_finish_attempt(Attempt *a, int slot);

/*
 * Queues on streaming attempts the journal's notifications their services
 * were not sent yet, to be sent after commit (attempt_send_queued).
 */
extern void lifecycle_queue_stream_notifications(List *attempts);

/*
 * The notification path: appends a notification to an invocation's journal
 * and, if it is suspended waiting for exactly this one, suspended -> ready.
 * Raises an error if the invocation does not exist or is completed.
 */
extern void lifecycle_notify(const char *invocation_id, NewEntry *entry);

/*
 * Queued signals are delivered, and queued cancellations and kills carried
 * out (one subtransaction each).  Returns the ids (palloc'd) of the
 * invocations that completed because of them.
 */
extern List *lifecycle_deliver_signals(int limit);

/* Due timers become SleepCompletion notifications (one subtransaction each). */
extern void lifecycle_fire_due_timers(int limit);

/*
 * running -> ready for invocations of this slot (slot 0: also of slots that
 * no longer exist) that have no live attempt in this process.  Returns how
 * many.
 */
extern int	lifecycle_release_orphans(int slot, int nworkers, List *live_ids);

/*
 * The earliest wake-up time of the timers journaled since the last call
 * (0: none), for a loop turn that does not look up lifecycle_next_wakeup.
 */
extern TimestampTz lifecycle_take_earliest_new_timer(void);

/* When something next becomes runnable by time alone; 0 if nothing. */
extern TimestampTz lifecycle_next_wakeup(void);

#endif							/* DURABLE_LIFECYCLE_H */
