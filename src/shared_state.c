/*-------------------------------------------------------------------------
 *
 * shared_state.c
 *	  Shared memory used to wake dispatchers and waiting backends.
 *
 * Dispatchers never poll for new work: a transaction that creates or
 * resumes an invocation asks to wake them, and an XactCallback sets their
 * latches once the transaction has committed (waking them earlier would let
 * them look before the work is visible).  Backends blocked in durable.await
 * or durable.call sleep on a condition variable that dispatchers broadcast
 * after committing completions.
 *
 * IDENTIFICATION
 *	  src/shared_state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "durable.h"
#include "shared_state.h"

typedef struct DurableSharedState
{
	/* Latch of each running dispatcher, NULL while the slot is empty. */
	Latch	   *dispatcher_latch[DURABLE_MAX_WORKERS];
	/* How the last start of each dispatcher went; see dispatcher.c. */
	DispatcherStart dispatcher_start[DURABLE_MAX_WORKERS];
	ConditionVariable completion_cv;
} DurableSharedState;

static DurableSharedState *shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static bool wake_requested = false;
static bool xact_callback_registered = false;
static int	my_dispatcher_slot = -1;

static void
shared_state_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(DurableSharedState)));
}

static void
shared_state_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("durable", sizeof(DurableSharedState), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(DurableSharedState));
		ConditionVariableInit(&shared->completion_cv);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
shared_state_register_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shared_state_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shared_state_startup;
}

static void
detach_dispatcher(int code, Datum arg)
{
	if (shared && my_dispatcher_slot >= 0)
		shared->dispatcher_latch[my_dispatcher_slot] = NULL;
}

void
shared_state_attach_dispatcher(int slot)
{
	Assert(slot >= 0 && slot < DURABLE_MAX_WORKERS);
	if (shared == NULL)
		return;
	my_dispatcher_slot = slot;
	shared->dispatcher_latch[slot] = MyLatch;
	on_shmem_exit(detach_dispatcher, (Datum) 0);
}

DispatcherStart *
shared_state_dispatcher_start(int slot)
{
	static DispatcherStart local;

	Assert(slot >= 0 && slot < DURABLE_MAX_WORKERS);
	return shared ? &shared->dispatcher_start[slot] : &local;
}

void
shared_state_wake_dispatchers(void)
{
	if (shared == NULL)
		return;
	for (int i = 0; i < DURABLE_MAX_WORKERS; i++)
	{
		/* Read once: the slot may be cleared concurrently. */
		Latch	   *latch = shared->dispatcher_latch[i];

		if (latch != NULL)
			SetLatch(latch);
	}
}

static void
wake_on_commit(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_requested)
				shared_state_wake_dispatchers();
			wake_requested = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_requested = false;
			break;
		default:
			break;
	}
}

void
shared_state_wake_dispatchers_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_on_commit, NULL);
		xact_callback_registered = true;
	}
	wake_requested = true;
}

ConditionVariable *
shared_state_completion_cv(void)
{
	return shared ? &shared->completion_cv : NULL;
}

void
shared_state_announce_completion(const char *invocation_id)
{
	if (shared)
		ConditionVariableBroadcast(&shared->completion_cv);
}
