/*-------------------------------------------------------------------------
 *
 * journal_store.h
 *	  The dispatchers' access to durable's tables: claiming invocations,
 *	  loading and appending journals, state, timers and attempt outcomes.
 *
 * All functions run inside a transaction with SPI connected; the caller
 * owns transaction boundaries.
 *
 * IDENTIFICATION
 *	  src/journal_store.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_JOURNAL_STORE_H
#define DURABLE_JOURNAL_STORE_H

#include "postgres.h"

#include "attempt.h"

extern bool store_extension_ready(void);
extern int	store_recover(int worker, int nworkers);

/*
 * Claims up to limit invocations; returns a List (allocated in list_cxt) of
 * Attempts (each in its own context under attempt_parent), loaded.
 */
extern List *store_claim(int worker, int limit, MemoryContext attempt_parent,
						 MemoryContext list_cxt);

extern int	store_append_entry(const char *invocation_id, uint16 type,
							   const char *name, int completion_id,
							   int signal_id, const char *signal_name,
							   const uint8 *raw, size_t rawlen);

extern void store_set_state(Attempt *a, const uint8 *key, size_t keylen,
							const uint8 *value, size_t valuelen);
extern void store_clear_state(Attempt *a, const uint8 *key, size_t keylen);
extern void store_clear_all_state(Attempt *a);
extern bool store_get_state(Attempt *a, const uint8 *key, size_t keylen,
							StringInfo value);
extern List *store_state_keys(Attempt *a);	/* of text (char *) */
extern void store_add_timer(const char *invocation_id, int completion_id,
							TimestampTz wake_at);

extern bool store_suspend(const char *invocation_id, int ncompletions,
						  uint32 *completions, int nsignals, uint32 *signals,
						  int nnamed, char **named);
extern void store_complete(const char *invocation_id, const uint8 *output,
						   size_t outlen, bool failed, int failure_code,
						   const char *failure_message);
/* pause: retrying cannot help, pause the invocation right away. */
extern char *store_attempt_failed(const char *invocation_id, int code,
								  const char *message, int64 retry_delay_ms,
								  bool pause);

/* Due timers: returns a List of (invocation id, completion id) pairs. */
typedef struct DueTimer
{
	char	   *invocation_id;
	int			completion_id;
} DueTimer;
extern List *store_take_due_timers(int limit);

/* Next time something becomes runnable without a wake-up; 0 if none. */
extern TimestampTz store_next_wakeup(void);

#endif							/* DURABLE_JOURNAL_STORE_H */
