/*-------------------------------------------------------------------------
 *
 * shared_state.c
 *	  Shared memory used to wake dispatchers and waiting backends.
 *
 * Dispatchers never poll for new work: a transaction that creates or
 * resumes an invocation asks to wake them, and an XactCallback sets their
 * latches once the transaction has committed (waking them earlier would let
 * them look before the work is visible).
 *
 * Backends blocked in durable.await or durable.call each have a waiter slot
 * (indexed by backend id) that names the invocation they wait for, by hash.
 * A dispatcher that committed a completion sets the latches of the waiters
 * of that invocation only, so a completion does not wake every waiting
 * backend.  The slot is written before the waiter looks at the invocation
 * and read after the dispatcher committed, with full barriers on both
 * sides: either the waiter sees the committed result or the dispatcher sees
 * the waiter.
 *
 * IDENTIFICATION
 *	  src/shared_state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/backendid.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "durable.h"
#include "shared_state.h"

/* One backend waiting for an invocation's result. */
typedef struct CompletionWaiter
{
	pg_atomic_uint32 active;	/* 1 while the backend waits */
	uint32		id_hash;		/* hash of the awaited invocation id */
	Latch	   *latch;			/* the waiting backend's latch */
} CompletionWaiter;

typedef struct DurableSharedState
{
	/* Latch of each running dispatcher, NULL while the slot is empty. */
	Latch	   *dispatcher_latch[DURABLE_MAX_WORKERS];
	/* How the last start of each dispatcher went; see dispatcher.c. */
	DispatcherStart dispatcher_start[DURABLE_MAX_WORKERS];
	/* Number of active waiters: announcing skips the scan when zero. */
	pg_atomic_uint32 n_waiters;
	/* One slot per backend id (MaxBackends of them). */
	CompletionWaiter waiters[FLEXIBLE_ARRAY_MEMBER];
} DurableSharedState;

static DurableSharedState *shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static bool wake_requested = false;
static bool xact_callback_registered = false;
static int	my_dispatcher_slot = -1;
static CompletionWaiter *my_waiter = NULL;
static bool waiter_exit_callback_registered = false;

static Size
shared_state_size(void)
{
	/* MaxBackends is known by the time the request hook runs. */
	return add_size(offsetof(DurableSharedState, waiters),
					mul_size(MaxBackends, sizeof(CompletionWaiter)));
}

static void
shared_state_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(shared_state_size()));
}

static void
shared_state_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("durable", shared_state_size(), &found);
	if (!found)
	{
		memset(shared, 0, shared_state_size());
		pg_atomic_init_u32(&shared->n_waiters, 0);
		for (int i = 0; i < MaxBackends; i++)
			pg_atomic_init_u32(&shared->waiters[i].active, 0);
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

bool
shared_state_dispatcher_running(void)
{
	if (shared == NULL)
		return false;
	for (int i = 0; i < DURABLE_MAX_WORKERS; i++)
		if (shared->dispatcher_latch[i] != NULL)
			return true;
	return false;
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

static uint32
hash_invocation_id(const char *invocation_id)
{
	return hash_bytes((const unsigned char *) invocation_id,
					  (int) strlen(invocation_id));
}

static void
stop_waiting_at_exit(int code, Datum arg)
{
	shared_state_stop_waiting();
}

bool
shared_state_wait_for_completion(const char *invocation_id)
{
	CompletionWaiter *w;

	if (shared == NULL || MyBackendId == InvalidBackendId ||
		MyBackendId > MaxBackends)
		return false;
	w = &shared->waiters[MyBackendId - 1];
	if (!waiter_exit_callback_registered)
	{
		/* A FATAL error in the wait does not pass through the caller. */
		on_shmem_exit(stop_waiting_at_exit, (Datum) 0);
		waiter_exit_callback_registered = true;
	}

	w->id_hash = hash_invocation_id(invocation_id);
	w->latch = MyLatch;
	if (my_waiter == NULL)
	{
		pg_write_barrier();
		pg_atomic_write_u32(&w->active, 1);
		/* a full barrier: the slot is visible before the caller looks */
		pg_atomic_fetch_add_u32(&shared->n_waiters, 1);
		my_waiter = w;
	}
	else
		pg_memory_barrier();
	return true;
}

void
shared_state_stop_waiting(void)
{
	if (my_waiter == NULL)
		return;
	pg_atomic_write_u32(&my_waiter->active, 0);
	pg_atomic_fetch_sub_u32(&shared->n_waiters, 1);
	my_waiter = NULL;
}

void
shared_state_announce_completion(const char *invocation_id)
{
	uint32		h;

	if (shared == NULL)
		return;
	/* Our commit must be visible before we look for waiters. */
	pg_memory_barrier();
	if (pg_atomic_read_u32(&shared->n_waiters) == 0)
		return;
	h = hash_invocation_id(invocation_id);
	for (int i = 0; i < MaxBackends; i++)
	{
		CompletionWaiter *w = &shared->waiters[i];

		if (pg_atomic_read_u32(&w->active) != 0 && w->id_hash == h)
		{
			/* Read once: a stale latch is another backend's, still valid. */
			Latch	   *latch = w->latch;

			if (latch != NULL)
				SetLatch(latch);
		}
	}
}
