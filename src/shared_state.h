/*-------------------------------------------------------------------------
 *
 * shared_state.h
 *	  Shared memory used to wake dispatchers and waiting backends.
 *
 * IDENTIFICATION
 *	  src/shared_state.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_SHARED_STATE_H
#define DURABLE_SHARED_STATE_H

#include "postgres.h"

extern void shared_state_register_hooks(void);

/* Dispatchers announce themselves so that committers can wake them. */
extern void shared_state_attach_dispatcher(int slot);

/*
 * Survives a dispatcher's restart: whether its last incarnation died while
 * connecting to durable.database (it does not exist), and whether that was
 * reported already.
 */
typedef struct DispatcherStart
{
	bool		connecting;
	bool		reported_missing_database;
} DispatcherStart;

extern DispatcherStart *shared_state_dispatcher_start(int slot);

/*
 * Whether some dispatcher is connected to durable.database (so it exists):
 * the submitters connect only then, so that a missing database is reported
 * by the dispatchers alone.
 */
extern bool shared_state_dispatcher_running(void);

/* Wake every dispatcher now / when the current transaction commits. */
extern void shared_state_wake_dispatchers(void);
extern void shared_state_wake_dispatchers_at_commit(void);

/*
 * A backend waiting for an invocation's result registers the invocation id
 * before each look at the invocation and sleeps on its own latch; once a
 * completion is committed, the dispatcher announces the id, which sets the
 * latches of the backends waiting for that id only.  Different ids may share
 * a hash: such a waiter is woken needlessly and just looks again.
 *
 * shared_state_wait_for_completion returns false (and registers nothing)
 * when durable was not preloaded; the caller then has to poll.
 */
extern bool shared_state_wait_for_completion(const char *invocation_id);
extern void shared_state_stop_waiting(void);
extern void shared_state_announce_completion(const char *invocation_id);

#endif							/* DURABLE_SHARED_STATE_H */
