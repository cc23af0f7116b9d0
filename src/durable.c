/*-------------------------------------------------------------------------
 *
 * durable.c
 *	  Module entry point: settings, shared memory hooks and the registration
 *	  of the dispatcher and submitter background workers.
 *
 * durable must be loaded through shared_preload_libraries: its dispatchers
 * and submitters are static background workers and it reserves shared
 * memory for waking them, both of which only the postmaster can set up.
 *
 * IDENTIFICATION
 *	  src/durable.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"

#include "durable.h"
#include "shared_state.h"
#include "submit_queue.h"

PG_MODULE_MAGIC;

char	   *durable_database = NULL;
int			durable_workers = 2;
int			durable_submitters = 2;
int			durable_max_concurrent_invocations = 200;
int			durable_retry_initial_interval_ms = 500;
int			durable_retry_max_interval_ms = 60000;
double		durable_retry_exponentiation_factor = 2.0;
int			durable_retry_max_attempts = 70;
int			durable_retry_on_max_attempts = RETRY_EXHAUSTED_PAUSE;
int			durable_inactivity_timeout_ms = 60000;
int			durable_abort_timeout_ms = 600000;
bool		durable_bidi = true;
int			durable_stream_idle_timeout_ms = 1000;
int			durable_discovery_timeout_ms = 10000;
int			durable_max_message_size = 32 * 1024 * 1024;
int			durable_max_journal_size = 256 * 1024 * 1024;
int			durable_max_response_size = 64 * 1024 * 1024;
int			durable_dispatcher_memory_budget_kb = 256 * 1024;
char	   *durable_tls_ca_file = NULL;
char	   *durable_allowed_hosts = NULL;

static const struct config_enum_entry retry_exhausted_options[] = {
	{"pause", RETRY_EXHAUSTED_PAUSE, false},
	{"kill", RETRY_EXHAUSTED_KILL, false},
	{NULL, 0, false}
};

void		_PG_init(void);

static void
define_settings(void)
{
	DefineCustomStringVariable("durable.database",
							   gettext_noop("Database whose durable extension the dispatchers serve."),
							   NULL,
							   &durable_database,
							   "postgres",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("durable.workers",
							gettext_noop("Number of dispatcher background workers."),
							NULL,
							&durable_workers,
							2, 1, DURABLE_MAX_WORKERS,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("durable.submitters",
							gettext_noop("Number of submitter background workers, which commit the invocations of durable.call."),
							gettext_noop("0: each durable.call starts a background worker of its own."),
							&durable_submitters,
							2, 0, DURABLE_MAX_SUBMITTERS,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("durable.max_concurrent_invocations",
							gettext_noop("Invocation attempts each dispatcher keeps in flight at once."),
							NULL,
							&durable_max_concurrent_invocations,
							200, 1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("durable.retry_initial_interval",
							gettext_noop("Delay before the first retry of a failed attempt."),
							NULL,
							&durable_retry_initial_interval_ms,
							500, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("durable.retry_max_interval",
							gettext_noop("Upper bound of the delay between retries."),
							NULL,
							&durable_retry_max_interval_ms,
							60000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomRealVariable("durable.retry_exponentiation_factor",
							 gettext_noop("Factor by which the retry delay grows after each failure."),
							 NULL,
							 &durable_retry_exponentiation_factor,
							 2.0, 1.0, 100.0,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("durable.retry_max_attempts",
							gettext_noop("Failed attempts after which an invocation is paused or killed."),
							gettext_noop("Counted since the journal last grew; 0 retries forever."),
							&durable_retry_max_attempts,
							70, 0, INT_MAX,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("durable.retry_on_max_attempts",
							 gettext_noop("What happens when retries are exhausted: pause or kill."),
							 NULL,
							 &durable_retry_on_max_attempts,
							 RETRY_EXHAUSTED_PAUSE, retry_exhausted_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("durable.inactivity_timeout",
							gettext_noop("An attempt that receives nothing for this long is failed and retried."),
							NULL,
							&durable_inactivity_timeout_ms,
							60000, 1000, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("durable.abort_timeout",
							gettext_noop("An attempt running longer than this is aborted and retried."),
							NULL,
							&durable_abort_timeout_ms,
							600000, 1000, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("durable.bidi",
							 gettext_noop("Streams attempts to deployments whose manifest says BIDI_STREAM."),
							 gettext_noop("Off: every attempt is one request and one response, as for REQUEST_RESPONSE deployments."),
							 &durable_bidi,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("durable.stream_idle_timeout",
							gettext_noop("A streaming attempt on which nothing was sent or received for this long is asked to suspend."),
							gettext_noop("durable ends its request stream; the service suspends once it waits for something."),
							&durable_stream_idle_timeout_ms,
							1000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("durable.discovery_timeout",
							gettext_noop("Time limit for the discovery request of register_deployment."),
							NULL,
							&durable_discovery_timeout_ms,
							10000, 100, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("durable.max_message_size",
							gettext_noop("Largest protocol message accepted from a service."),
							NULL,
							&durable_max_message_size,
							32 * 1024 * 1024, 1024, 1024 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("durable.max_journal_size",
							gettext_noop("Largest journal a dispatcher sends to a service in one attempt."),
							gettext_noop("An invocation whose journal grew larger is paused."),
							&durable_max_journal_size,
							256 * 1024 * 1024, 1024, 900 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("durable.max_response_size",
							gettext_noop("Largest response accepted from a service for one attempt."),
							gettext_noop("An attempt whose response grows beyond it fails; "
										 "the limit applies to all its messages together."),
							&durable_max_response_size,
							64 * 1024 * 1024, 1024, 1024 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("durable.dispatcher_memory_budget",
							gettext_noop("Memory each dispatcher may hold in request and response bodies."),
							gettext_noop("A dispatcher over it claims no new attempts, and an "
										 "attempt whose next message would exceed it fails and is retried."),
							&durable_dispatcher_memory_budget_kb,
							256 * 1024, 1024, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomStringVariable("durable.tls_ca_file",
							   gettext_noop("File of CA certificates that https:// deployments are verified against."),
							   gettext_noop("Empty: the system's default CA store."),
							   &durable_tls_ca_file,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	/*
	 * Which hosts register_deployment may point durable at.  SIGHUP, not
	 * SUSET: it is a server-wide network policy set by the administrator in
	 * the configuration file, the same for every session (a session cannot
	 * widen it, not even a superuser's with SET), and reloadable.
	 */
	DefineCustomStringVariable("durable.allowed_hosts",
							   gettext_noop("Hosts that deployments may be registered at."),
							   gettext_noop("Comma-separated host names or IP addresses; \"*.example.com\" allows every subdomain. Empty: any host."),
							   &durable_allowed_hosts,
							   "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("durable");
}

/* count background workers of one kind, started once recovery is over. */
static void
register_workers(int count, const char *function, const char *type)
{
	for (int i = 0; i < count; i++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
			BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 1;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "durable");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
		snprintf(worker.bgw_name, BGW_MAXLEN, "%s %d", type, i);
		snprintf(worker.bgw_type, BGW_MAXLEN, "%s", type);
		worker.bgw_main_arg = Int32GetDatum(i);
		worker.bgw_notify_pid = 0;
		RegisterBackgroundWorker(&worker);
	}
}

void
durable_pin_worker_settings(void)
{
	/*
	 * Name resolution must not depend on settings anyone else controls
	 * (ALTER DATABASE / ROLE ... SET search_path): only PostgreSQL's
	 * catalog, and every statement of ours qualifies durable's objects.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	/* Our short transactions are never cancelled by user settings. */
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	/* The state machine relies on a fresh snapshot per statement. */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);
}

void
_PG_init(void)
{
	/*
	 * Settings are defined even when loaded later (e.g. by CREATE EXTENSION
	 * in a session) so that SHOW works, but workers and shared memory need
	 * the postmaster.
	 */
	define_settings();

	if (!process_shared_preload_libraries_in_progress)
	{
		if (!IsBinaryUpgrade && IsUnderPostmaster)
			ereport(WARNING,
					(errmsg("durable is not in shared_preload_libraries"),
					 errdetail("Invocations will be stored but no dispatcher will run them."),
					 errhint("Add durable to shared_preload_libraries and restart the server.")));
		return;
	}

	if (IsBinaryUpgrade)
		return;

	/* libcurl's global state must be set up once, before any thread or fork. */
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errmsg("could not initialize libcurl")));

	shared_state_register_hooks();
	submit_queue_register_hooks();
	register_workers(durable_workers, "dispatcher_main", "durable dispatcher");
	register_workers(durable_submitters, "submitter_main", "durable submitter");
}
