/*-------------------------------------------------------------------------
 *
 * submit_queue.c
 *	  Requests from backends to the pool of submitter workers, through
 *	  shared memory (used by durable.call).
 *
 * Each backend has one request slot (indexed by backend id).  A backend
 * running durable.call writes its database, its current role and the
 * arguments of durable.send into its slot (arguments too long for the slot
 * go into a DSM segment whose handle the slot holds), marks it PENDING,
 * wakes an idle submitter and sleeps on its latch.  A submitter takes a
 * PENDING slot (RUNNING), runs durable.send, writes the invocation id or
 * the error into the slot (DONE) and sets the backend's latch; the backend
 * reads the result and frees the slot.
 *
 *	  FREE --backend--> PENDING --submitter--> RUNNING --submitter--> DONE
 *	  PENDING --backend gives up--> FREE		(nothing was submitted)
 *	  RUNNING --backend gives up--> ABANDONED --submitter--> FREE
 *	  DONE --backend--> FREE
 *
 * Every transition out of a state two processes may leave is a
 * compare-and-swap, so exactly one of them makes it.  A backend that is
 * cancelled or exits while its request runs leaves it ABANDONED: the
 * submitter does not write the result into it, frees it, and the backend
 * (or the next one with that backend id) waits for FREE before it fills
 * the slot again.  A RUNNING request is also signalled (SIGINT) so that a
 * submitter blocked on a lock (say, another transaction's idempotency key)
 * gives it up instead of being lost to the pool.
 *
 * Submitters mark themselves idle before they sleep and look for work once
 * more afterwards; a backend wakes one idle submitter (claiming it with a
 * compare-and-swap of its idle flag) and none when all are busy, since a
 * busy submitter looks for more work before it sleeps.
 *
 * IDENTIFICATION
 *	  src/submit_queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/backendid.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"

#include "durable.h"
#include "submit_queue.h"

#define SLOT_FREE		0
#define SLOT_PENDING	1
#define SLOT_RUNNING	2
#define SLOT_DONE		3
#define SLOT_ABANDONED	4

/* Arguments up to this size travel in the slot itself. */
#define INLINE_ARGS_SIZE 4096

/* How often a waiting backend checks that a submitter is still running. */
#define CHECK_POOL_MS	1000

typedef struct SubmitSlot
{
	pg_atomic_uint32 state;

	/* Written by the backend before PENDING. */
	Latch	   *caller_latch;
	Oid			database;
	Oid			role;
	dsm_handle	args_dsm;		/* 0: the arguments are in inline_args */
	Size		args_size;
	int			arg_offset[SUBMIT_NARGS];	/* -1 for NULL */

	/* Written by the submitter when it takes the slot. */
	int			submitter;

	/* Written by the submitter before DONE. */
	bool		failed;
	int			sqlerrcode;
	char		invocation_id[64];
	char		message[1024];
	char		detail[1024];
	char		hint[512];

	char		inline_args[INLINE_ARGS_SIZE];
} SubmitSlot;

typedef struct Submitter
{
	Latch	   *latch;			/* NULL while not running */
	pid_t		pid;
	Oid			database;
	pg_atomic_uint32 idle;		/* 1 while it sleeps and nobody woke it */
} Submitter;

typedef struct SubmitQueue
{
	Submitter	submitters[DURABLE_MAX_SUBMITTERS];
	/* One slot per backend id (MaxBackends of them). */
	SubmitSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} SubmitQueue;

static SubmitQueue *queue = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Backend side: the slot of the request we wait for, if any. */
static SubmitSlot *my_request = NULL;
static bool exit_callback_registered = false;

/* Submitter side. */
static int	my_index = -1;
static volatile int current_slot = -1;
static int	next_scan_start = 0;

static Size
queue_size(void)
{
	return add_size(offsetof(SubmitQueue, slots),
					mul_size(MaxBackends, sizeof(SubmitSlot)));
}

static void
queue_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(queue_size()));
}

static void
queue_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	queue = ShmemInitStruct("durable submit queue", queue_size(), &found);
	if (!found)
	{
		memset(queue, 0, offsetof(SubmitQueue, slots));
		for (int i = 0; i < DURABLE_MAX_SUBMITTERS; i++)
			pg_atomic_init_u32(&queue->submitters[i].idle, 0);
		for (int i = 0; i < MaxBackends; i++)
		{
			pg_atomic_init_u32(&queue->slots[i].state, SLOT_FREE);
			queue->slots[i].caller_latch = NULL;
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

void
submit_queue_register_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = queue_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = queue_startup;
}

static bool
cas_state(SubmitSlot *slot, uint32 from, uint32 to)
{
	uint32		expected = from;

	return pg_atomic_compare_exchange_u32(&slot->state, &expected, to);
}

/* ---------------------------------------------------------------- backend */

/* Whether a submitter serving this database is running. */
static bool
pool_serves_us(void)
{
	for (int i = 0; i < durable_submitters; i++)
	{
		Submitter  *s = &queue->submitters[i];

		if (s->latch != NULL && s->database == MyDatabaseId)
			return true;
	}
	return false;
}

/* Wakes one idle submitter; none if all are busy (they look again). */
static void
wake_a_submitter(void)
{
	int			n = durable_submitters;

	for (int k = 0; k < n; k++)
	{
		Submitter  *s = &queue->submitters[(MyBackendId + k) % n];
		Latch	   *latch = s->latch;	/* read once */
		uint32		idle = 1;

		if (latch != NULL && s->database == MyDatabaseId &&
			pg_atomic_compare_exchange_u32(&s->idle, &idle, 0))
		{
			SetLatch(latch);
			return;
		}
	}
}

/*
 * Gives up the request we wait for: withdrawn if no submitter took it yet,
 * else left for the submitter to free (and the submitter is asked to stop
 * working on it).
 */
static void
abandon_request(void)
{
	SubmitSlot *slot = my_request;

	if (slot == NULL)
		return;
	my_request = NULL;

	if (cas_state(slot, SLOT_PENDING, SLOT_FREE))
		return;
	if (cas_state(slot, SLOT_RUNNING, SLOT_ABANDONED))
	{
		int			index = slot->submitter;
		pid_t		pid;

		if (index >= 0 && index < DURABLE_MAX_SUBMITTERS &&
			(pid = queue->submitters[index].pid) != 0 &&
			BackendPidGetProc(pid) != NULL)
			kill(pid, SIGINT);
		return;
	}
	/* DONE: the result is of no use any more. */
	if (pg_atomic_read_u32(&slot->state) == SLOT_DONE)
		pg_atomic_write_u32(&slot->state, SLOT_FREE);
}

static void
abandon_at_exit(int code, Datum arg)
{
	abandon_request();
}

/* Lays the arguments out one after the other, NUL-terminated. */
static Size
args_layout(const char *const args[SUBMIT_NARGS], int offsets[SUBMIT_NARGS])
{
	Size		size = 0;

	for (int i = 0; i < SUBMIT_NARGS; i++)
	{
		if (args[i] == NULL)
		{
			offsets[i] = -1;
			continue;
		}
		offsets[i] = (int) size;
		size = add_size(size, strlen(args[i]) + 1);
	}
	if (size > (Size) INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("arguments of durable.call are too large")));
	return size;
}

static void
args_copy(char *dst, const char *const args[SUBMIT_NARGS], const int offsets[SUBMIT_NARGS])
{
	for (int i = 0; i < SUBMIT_NARGS; i++)
		if (args[i] != NULL)
			strcpy(dst + offsets[i], args[i]);
}

char *
submit_queue_submit(const char *const args[SUBMIT_NARGS])
{
	SubmitSlot *slot;
	dsm_segment *volatile seg = NULL;
	int			offsets[SUBMIT_NARGS];
	Size		size;
	char	   *id = NULL;

	if (queue == NULL || durable_submitters == 0 ||
		MyBackendId == InvalidBackendId || MyBackendId > MaxBackends)
		return NULL;
	if (!pool_serves_us())
		return NULL;
	slot = &queue->slots[MyBackendId - 1];

	if (!exit_callback_registered)
	{
		/* A FATAL error in the wait does not pass through our PG_CATCH. */
		before_shmem_exit(abandon_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}

	/*
	 * An earlier request from this backend id that was abandoned may still
	 * run (its submitter frees the slot when done): do not wait for it.
	 */
	if (pg_atomic_read_u32(&slot->state) != SLOT_FREE)
		return NULL;

	size = args_layout(args, offsets);
	slot->args_dsm = 0;
	if (size <= INLINE_ARGS_SIZE)
		args_copy(slot->inline_args, args, offsets);
	else
	{
		seg = dsm_create(size, 0);
		args_copy(dsm_segment_address(seg), args, offsets);
		slot->args_dsm = dsm_segment_handle(seg);
	}
	slot->args_size = size;
	memcpy(slot->arg_offset, offsets, sizeof(offsets));
	slot->caller_latch = MyLatch;
	slot->database = MyDatabaseId;
	slot->role = GetUserId();
	slot->submitter = -1;
	slot->failed = false;

	/* The request is complete before it is seen PENDING. */
	pg_write_barrier();
	pg_atomic_write_u32(&slot->state, SLOT_PENDING);
	my_request = slot;
	/* ... and PENDING is visible before we read the idle flags. */
	pg_memory_barrier();
	wake_a_submitter();

	PG_TRY();
	{
		for (;;)
		{
			uint32		state = pg_atomic_read_u32(&slot->state);

			if (state == SLOT_DONE)
				break;
			/* Every submitter stopped: withdraw, and submit another way. */
			if (state == SLOT_PENDING && !pool_serves_us() &&
				cas_state(slot, SLOT_PENDING, SLOT_FREE))
			{
				my_request = NULL;
				break;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 CHECK_POOL_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		abandon_request();
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (seg != NULL)
		dsm_detach(seg);
	if (my_request == NULL)
		return NULL;			/* withdrawn */

	pg_read_barrier();
	my_request = NULL;
	if (slot->failed)
	{
		int			sqlerrcode = slot->sqlerrcode;
		char	   *message = pstrdup(slot->message);
		char	   *detail = slot->detail[0] ? pstrdup(slot->detail) : NULL;
		char	   *hint = slot->hint[0] ? pstrdup(slot->hint) : NULL;

		pg_atomic_write_u32(&slot->state, SLOT_FREE);
		ereport(ERROR,
				(errcode(sqlerrcode),
				 errmsg_internal("%s", message),
				 detail ? errdetail_internal("%s", detail) : 0,
				 hint ? errhint("%s", hint) : 0));
	}
	id = pstrdup(slot->invocation_id);
	pg_atomic_write_u32(&slot->state, SLOT_FREE);
	return id;
}

/* -------------------------------------------------------------- submitter */

static void
report_exit(int code, Datum arg)
{
	Submitter  *me = &queue->submitters[my_index];

	/*
	 * Interrupts are held from the commit until the result is reported, so
	 * a request still held here was not committed.
	 */
	if (current_slot >= 0)
	{
		ErrorData	edata = {0};

		edata.sqlerrcode = ERRCODE_ADMIN_SHUTDOWN;
		edata.message = "durable submitter exited before it submitted the invocation";
		edata.hint = "See the server log.";
		submit_queue_report(NULL, &edata);
	}
	me->latch = NULL;
	me->pid = 0;
	pg_atomic_write_u32(&me->idle, 0);
}

void
submit_queue_attach_submitter(int index)
{
	Submitter  *me;

	Assert(index >= 0 && index < DURABLE_MAX_SUBMITTERS);
	if (queue == NULL)
		elog(ERROR, "durable submit queue is not in shared memory");
	my_index = index;
	me = &queue->submitters[index];
	me->pid = MyProcPid;
	me->database = MyDatabaseId;
	pg_atomic_write_u32(&me->idle, 0);
	pg_write_barrier();
	me->latch = MyLatch;
	on_shmem_exit(report_exit, (Datum) 0);
}

void
submit_queue_set_idle(bool idle)
{
	pg_atomic_write_u32(&queue->submitters[my_index].idle, idle ? 1 : 0);
	/* Seen idle before we look for requests once more. */
	pg_memory_barrier();
}

bool
submit_queue_take(SubmitWork *work)
{
	for (int k = 0; k < MaxBackends; k++)
	{
		int			i = (next_scan_start + k) % MaxBackends;
		SubmitSlot *slot = &queue->slots[i];
		const char *data;
		dsm_segment *seg = NULL;

		if (pg_atomic_read_u32(&slot->state) != SLOT_PENDING)
			continue;
		pg_read_barrier();
		if (slot->database != MyDatabaseId)
			continue;

		if (!cas_state(slot, SLOT_PENDING, SLOT_RUNNING))
			continue;
		slot->submitter = my_index;
		next_scan_start = (i + 1) % MaxBackends;

		/*
		 * A cancel signal that arrives from here on is for this request (the
		 * signal handler looks at current_slot); one that arrived before was
		 * for a finished request.  A backend that gave up before the signal
		 * could reach us is seen below, by the slot's state.
		 */
		current_slot = i;
		QueryCancelPending = false;
		pg_memory_barrier();

		work->slot = i;
		work->role = slot->role;
		if (slot->args_dsm == 0)
			data = slot->inline_args;
		else
		{
			seg = dsm_attach(slot->args_dsm);
			data = seg ? dsm_segment_address(seg) : NULL;
		}
		for (int a = 0; a < SUBMIT_NARGS; a++)
			work->args[a] = (data != NULL && slot->arg_offset[a] >= 0) ?
				pstrdup(data + slot->arg_offset[a]) : NULL;
		if (seg != NULL)
			dsm_detach(seg);

		/*
		 * The backend gave up (and may have dropped the DSM segment) before
		 * we had the arguments: do not run anything with them.
		 */
		pg_memory_barrier();
		if (pg_atomic_read_u32(&slot->state) != SLOT_RUNNING || data == NULL)
		{
			ErrorData	edata = {0};

			edata.sqlerrcode = ERRCODE_QUERY_CANCELED;
			edata.message = "durable.call gave up its request";
			submit_queue_report(NULL, &edata);
			continue;
		}
		return true;
	}
	return false;
}

void
submit_queue_report(const char *invocation_id, const ErrorData *edata)
{
	SubmitSlot *slot;
	Latch	   *latch;

	if (current_slot < 0)
		return;
	slot = &queue->slots[current_slot];
	latch = slot->caller_latch;

	if (pg_atomic_read_u32(&slot->state) == SLOT_RUNNING)
	{
		if (edata != NULL)
		{
			slot->failed = true;
			slot->sqlerrcode = edata->sqlerrcode;
			strlcpy(slot->message, edata->message ? edata->message : "", sizeof(slot->message));
			strlcpy(slot->detail, edata->detail ? edata->detail : "", sizeof(slot->detail));
			strlcpy(slot->hint, edata->hint ? edata->hint : "", sizeof(slot->hint));
		}
		else
		{
			slot->failed = false;
			strlcpy(slot->invocation_id, invocation_id, sizeof(slot->invocation_id));
		}
		pg_write_barrier();
	}
	/* The backend may have given up meanwhile: then we free the slot. */
	if (!cas_state(slot, SLOT_RUNNING, SLOT_DONE))
		(void) cas_state(slot, SLOT_ABANDONED, SLOT_FREE);
	current_slot = -1;
	/* A cancel that came too late for the request must not hit the next. */
	QueryCancelPending = false;
	if (latch != NULL)
		SetLatch(latch);
}

bool
submit_queue_current_abandoned(void)
{
	int			i = current_slot;

	return i >= 0 && queue != NULL &&
		pg_atomic_read_u32(&queue->slots[i].state) == SLOT_ABANDONED;
}
