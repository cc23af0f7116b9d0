/*-------------------------------------------------------------------------
 *
 * submit_queue.h
 *	  Requests from backends to the pool of submitter workers, through
 *	  shared memory (used by durable.call).
 *
 * IDENTIFICATION
 *	  src/submit_queue.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_SUBMIT_QUEUE_H
#define DURABLE_SUBMIT_QUEUE_H

#include "postgres.h"

/* service, handler, input (jsonb text), key, idempotency key, headers */
#define SUBMIT_NARGS 6

extern void submit_queue_register_hooks(void);

/*
 * Backend side.  Hands the request to a submitter of the pool and waits for
 * it; returns the invocation id, or re-raises the error of durable.send.
 * Returns NULL without submitting anything when the pool cannot take the
 * request: durable was not preloaded, no submitter serves this database,
 * or none is running.
 */
extern char *submit_queue_submit(const char *const args[SUBMIT_NARGS]);

/* Submitter side. */

/* One request taken by a submitter; args are palloc'd copies. */
typedef struct SubmitWork
{
	int			slot;
	Oid			role;			/* the caller's current user */
	char	   *args[SUBMIT_NARGS];
} SubmitWork;

/* Announces a connected submitter; undone (and its request failed) at exit. */
extern void submit_queue_attach_submitter(int index);

/*
 * Marks the submitter idle (it is about to sleep) or busy.  After marking
 * it idle, the caller must look for requests once more before sleeping: a
 * backend that saw it busy did not wake it.
 */
extern void submit_queue_set_idle(bool idle);

/* Takes the next pending request of this submitter's database, if any. */
extern bool submit_queue_take(SubmitWork *work);

/* Reports the result (id) or the error (edata) of the request taken last. */
extern void submit_queue_report(const char *invocation_id, const ErrorData *edata);

/*
 * True while the backend of the request taken last has given up on it (it
 * was cancelled): finishing it early is pointless.  Signal-safe.
 */
extern bool submit_queue_current_abandoned(void);

#endif							/* DURABLE_SUBMIT_QUEUE_H */
