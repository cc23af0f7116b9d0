/*-------------------------------------------------------------------------
 *
 * durable.h
 *	  Settings (GUCs) and process-wide declarations shared by every part of
 *	  the durable extension.
 *
 * IDENTIFICATION
 *	  src/durable.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_H
#define DURABLE_H

#include "postgres.h"

#define DURABLE_MAX_WORKERS 16
#define DURABLE_MAX_SUBMITTERS 16

/* What happens when an invocation exhausts its retry attempts. */
typedef enum RetryExhaustedAction
{
	RETRY_EXHAUSTED_PAUSE,
	RETRY_EXHAUSTED_KILL
} RetryExhaustedAction;

extern char *durable_database;
extern int	durable_workers;
extern int	durable_submitters;
extern int	durable_max_concurrent_invocations;
extern int	durable_retry_initial_interval_ms;
extern int	durable_retry_max_interval_ms;
extern double durable_retry_exponentiation_factor;
extern int	durable_retry_max_attempts;
extern int	durable_retry_on_max_attempts;
extern int	durable_inactivity_timeout_ms;
extern bool durable_bidi;

/*
 * Pins, in a background worker, the settings its statements rely on:
 * search_path, no statement/lock/idle timeouts, read committed.  Called
 * once connected, before any SPI.
 */
extern void durable_pin_worker_settings(void);
extern int	durable_stream_idle_timeout_ms;
extern int	durable_abort_timeout_ms;
extern int	durable_discovery_timeout_ms;
extern int	durable_max_message_size;
extern int	durable_max_journal_size;
extern int	durable_max_response_size;
extern int	durable_dispatcher_memory_budget_kb;
extern char *durable_tls_ca_file;
extern char *durable_allowed_hosts;

/* Entry points of our background workers (exported for the postmaster). */
extern PGDLLEXPORT void dispatcher_main(Datum main_arg);
extern PGDLLEXPORT void submitter_main(Datum main_arg);
extern PGDLLEXPORT void submitter_once_main(Datum main_arg);

#endif							/* DURABLE_H */
