/*-------------------------------------------------------------------------
 *
 * attempt.h
 *	  One attempt of an invocation: the request we send (StartMessage plus
 *	  the whole journal) and what we make of the service's answer.
 *
 * IDENTIFICATION
 *	  src/attempt.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_ATTEMPT_H
#define DURABLE_ATTEMPT_H

#include "postgres.h"

#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "frame_reader.h"
#include "http_client.h"
#include "invocation_id.h"

typedef struct Attempt
{
	dlist_node	node;
	MemoryContext cxt;			/* everything below lives here */

	/* What was claimed */
	char	   *invocation_id;
	uint8		invocation_id_raw[INVOCATION_ID_RAW_LEN];
	char	   *service_name;
	char	   *handler_name;
	char	   *service_key;	/* NULL for plain services */
	char	   *uri;			/* NULL if the service is gone */
	char	   *deployment_headers;	/* JSON object text */
	char	   *http_version;
	int			protocol_version;
	uint64		random_seed;
	int			retry_count_since_last_stored_entry;
	int64		ms_since_last_stored_entry;
	long		inactivity_timeout_ms;
	long		abort_timeout_ms;
	char	   *url;
	struct curl_slist *request_headers;

	/* Loaded at claim time: eager state and the journal's framed entries */
	List	   *state_entries;	/* of Wire__StartMessage__StateEntry * */
	StringInfoData journal_bytes;
	int			known_entries;

	/* Request body: Start + known entries */
	StringInfoData request;

	char	   *expected_content_type;

	HttpTransfer transfer;
	FrameReader reader;			/* the response's frames */
	bool		started;

	/* Collected while applying the response */
	bool		output_failed;
	uint8	   *output;
	size_t		output_len;
	uint32		output_failure_code;
	char	   *output_failure_message;
} Attempt;

/* What an attempt ended with, once its response has been applied. */
typedef enum AttemptOutcome
{
	ATTEMPT_COMPLETED,
	ATTEMPT_SUSPENDED,
	ATTEMPT_RESUMABLE,			/* suspended, but already resumable */
	ATTEMPT_FAILED
} AttemptOutcome;

extern Attempt *attempt_create(MemoryContext parent);
extern void attempt_destroy(Attempt *a);
extern void attempt_add_state_entry(Attempt *a, const char *key, int keylen,
									const char *value, int valuelen);
extern void attempt_add_journal_entry(Attempt *a, uint16 type,
									  const char *raw, int rawlen);
extern void attempt_prepare_request(Attempt *a);
extern void attempt_start(Attempt *a);

/*
 * Applies a finished attempt's response to the store (inside the caller's
 * transaction).  Errors are raised with ereport; the caller turns them into
 * a failed attempt.
 */
extern AttemptOutcome attempt_apply_response(Attempt *a);

#endif							/* DURABLE_ATTEMPT_H */
