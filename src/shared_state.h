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

#include "storage/condition_variable.h"

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

/* Wake every dispatcher now / when the current transaction commits. */
extern void shared_state_wake_dispatchers(void);
extern void shared_state_wake_dispatchers_at_commit(void);

/*
 * Backends waiting for invocation results sleep on this condition variable;
 * dispatchers broadcast it after committing completed invocations.
 * Returns NULL when durable was not preloaded.
 */
extern ConditionVariable *shared_state_completion_cv(void);
extern void shared_state_announce_completion(const char *invocation_id);

#endif							/* DURABLE_SHARED_STATE_H */
