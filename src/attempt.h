/*-------------------------------------------------------------------------
 *
 * attempt.h
 *	  The protocol session of one attempt: the request we send (StartMessage
 *	  plus the whole journal) and the decoding of the service's answer into
 *	  a list of effects.
 *
 * This module only speaks the protocol.  It never reads or writes tables:
 * lifecycle.c decides what the effects mean for the invocation's status and
 * journal_store.c stores them.
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
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "frame_reader.h"
#include "http_client.h"
#include "invocation_id.h"
#include "protocol.h"

/* The retry policy in force for an invocation, read when it is claimed. */
typedef struct RetryPolicy
{
	int64		initial_interval_ms;
	int64		max_interval_ms;
	double		factor;
	int			max_attempts;	/* 0: retry forever */
	bool		kill_on_max;	/* else pause */
} RetryPolicy;

typedef struct DecodeState DecodeState;

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
	char	   *deployment_headers; /* "name: value" lines */
	char	   *http_version;
	int			protocol_version;
	uint64		random_seed;
	int			retry_count_since_last_stored_entry;
	int64		ms_since_last_stored_entry;
	long		inactivity_timeout_ms;
	long		abort_timeout_ms;
	RetryPolicy retry;
	char	   *url;
	struct curl_slist *request_headers;

	/* Loaded at claim time: eager state and the journal's framed entries */
	List	   *state_entries;	/* of Wire__StartMessage__StateEntry * */
	StringInfoData journal_bytes;
	int			known_entries;

	/*
	 * What the journal holds, for checking the service's answer against it:
	 * every completion id a command of the journal waits for or a
	 * notification carries (CompletionSeen), and whether the Output command
	 * is already there.
	 */
	HTAB	   *completions;
	bool		output_journaled;

	/* Request body: Start + known entries */
	StringInfoData request;

	char	   *expected_content_type;

	HttpTransfer transfer;
	FrameReader reader;			/* the response's frames */
	bool		started;
	bool		ended;			/* its effects are stored, or it failed */

	/* Decoding, a piece at a time for a streaming attempt */
	DecodeState *decode;
	bool		content_type_checked;
	int			frames_decoded; /* reader.complete_frames decoded so far */
	size_t		decoded_bytes;	/* of the reader's buffer, to drop next time */

	/*
	 * BIDI_STREAM: the request stays open while the service runs.  Journal
	 * notifications are sent as soon as they are committed; journal_cursor
	 * is the index from which the journal may hold notifications the
	 * service was not sent yet.  Until input_closed, durable may send; it
	 * closes the request when the stream has been idle for
	 * durable.stream_idle_timeout, so that the service suspends.
	 */
	bool		bidi;
	int			journal_cursor;
	int			pending_cursor; /* journal_cursor once outgoing is sent */
	StringInfoData outgoing;	/* frames to send after commit */
	TimestampTz last_activity;	/* last frame sent or received */
	bool		input_closed;
	TimestampTz input_closed_at;
} Attempt;

typedef struct CompletionSeen
{
	uint32		completion_id;	/* hash key */
	bool		is_run;			/* a Run command waits for it */
	bool		completed;		/* its notification is journaled */
} CompletionSeen;

/* One journal entry the response adds. */
typedef struct NewEntry
{
	uint16		type;
	char	   *name;			/* valid UTF-8 or NULL */
	uint32		completion_id;	/* 0: none */
	uint32		signal_id;		/* 0: none */
	char	   *signal_name;	/* valid UTF-8 or NULL */
	char	   *invoked_id;		/* Call, OneWayCall: the invocation started */
	char	   *invoked_target;
	const uint8 *raw;
	size_t		len;
} NewEntry;

typedef enum StateWriteKind
{
	STATE_WRITE_SET,
	STATE_WRITE_CLEAR,
	STATE_WRITE_CLEAR_ALL
} StateWriteKind;

typedef struct StateWrite
{
	StateWriteKind kind;
	char	   *key;			/* valid text; NULL for CLEAR_ALL */
	const uint8 *value;
	size_t		len;
} StateWrite;

/*
 * A signal for another invocation (or this one): an awakeable's completion
 * or a SendSignal, queued and delivered by the notification path.
 */
typedef struct OutgoingSignal
{
	char	   *invocation_id;	/* the target */
	uint32		signal_index;	/* 0 for a named signal */
	char	   *signal_name;	/* valid UTF-8, or NULL */
	uint8	   *raw;			/* the SignalNotification */
	size_t		len;
} OutgoingSignal;

/*
 * A Call or OneWayCall: an invocation to create in the transaction that
 * journals the command.  Its id is the CallInvocationIdCompletion; a Call's
 * caller also waits for its end (CallCompletion).
 */
typedef struct OutgoingCall
{
	NewEntry   *command;		/* the journal entry, to note the id on */
	char	   *service_name;	/* valid UTF-8 */
	char	   *handler_name;
	char	   *key;			/* as sent: '' for plain services */
	char	   *idempotency_key;	/* NULL: none */
	const uint8 *parameter;
	size_t		parameter_len;
	int			n_headers;
	char	  **header_names;
	char	  **header_values;
	TimestampTz invoke_at;		/* 0: now */
	uint32		invocation_id_completion;
	uint32		result_completion;	/* 0: a OneWayCall */
} OutgoingCall;

/*
 * Commands answered from what is stored: workflow promises and other
 * invocations' results.  Answered in the transaction that journals them,
 * or, for what is not there yet, when it comes.
 */
typedef enum LookupKind
{
	LOOKUP_GET_PROMISE,			/* waits until the promise is completed */
	LOOKUP_PEEK_PROMISE,		/* its value now, or void */
	LOOKUP_COMPLETE_PROMISE,	/* void, or failure 409 if completed already */
	LOOKUP_ATTACH,				/* waits until the invocation ends */
	LOOKUP_GET_OUTPUT			/* its result now, or void */
} LookupKind;

typedef struct CommandLookup
{
	LookupKind	kind;
	uint16		notification_type;
	uint32		completion_id;
	/* promises: the name, and for COMPLETE its value or failure */
	char	   *promise_name;
	NotificationResult promise_result;
	/* ATTACH, GET_OUTPUT: the target, by id or by what identifies it */
	char	   *target_id;
	char	   *target_service;
	char	   *target_key;		/* NULL: none */
	char	   *target_handler; /* NULL for a workflow target */
	char	   *target_idempotency_key;
} CommandLookup;

typedef struct NewTimer
{
	uint32		completion_id;
	TimestampTz wake_at;		/* DT_NOEND: never */
} NewTimer;

/* What a suspended invocation waits for: any one of these notifications. */
typedef struct WaitSet
{
	int			n_completions;
	uint32	   *completions;
	int			n_signals;
	uint32	   *signals;
	int			n_named_signals;
	char	  **named_signals;
} WaitSet;

/* How the attempt ended. */
typedef enum AttemptEnd
{
	ATTEMPT_END_NONE,			/* a streaming attempt goes on */
	ATTEMPT_END_COMPLETED,		/* Output + End */
	ATTEMPT_END_SUSPENDED,		/* Suspension */
	ATTEMPT_END_FAILED			/* Error, transport failure, bad stream */
} AttemptEnd;

/*
 * Everything a response means, in the order it must be stored: journal
 * entries, state writes and timers, then how the attempt ended.
 */
typedef struct AttemptEffects
{
	List	   *entries;		/* of NewEntry * */
	List	   *state_writes;	/* of StateWrite * */
	List	   *timers;			/* of NewTimer * */
	List	   *signals;		/* of OutgoingSignal * */
	List	   *calls;			/* of OutgoingCall * */
	List	   *lookups;		/* of CommandLookup * */

	AttemptEnd	end;

	/* ATTEMPT_END_COMPLETED */
	bool		output_failed;
	const uint8 *output;		/* NULL: no value */
	size_t		output_len;
	int			output_failure_code;
	char	   *output_failure_message;
	FailureMetadata output_failure_metadata;

	/* ATTEMPT_END_SUSPENDED */
	WaitSet		waits;

	/* ATTEMPT_END_FAILED */
	int			failure_code;
	char	   *failure_message;
	int64		retry_delay_ms; /* the service's next_retry_delay, -1: none */
} AttemptEffects;

extern Attempt *attempt_create(MemoryContext parent);
extern void attempt_destroy(Attempt *a);
extern void attempt_add_state_entry(Attempt *a, const char *key, int keylen,
									const char *value, int valuelen);
extern void attempt_add_journal_entry(Attempt *a, uint16 type,
									  const char *raw, int rawlen);
extern void attempt_prepare_request(Attempt *a);
extern void attempt_start(Attempt *a);

/*
 * Decodes what arrived of an attempt's response since the last call into
 * effects (allocated in the current memory context): for a finished
 * request/response attempt, the whole response; for a streaming one, the
 * messages that arrived since (fx->end ATTEMPT_END_NONE while it goes on).
 * A response that breaks the protocol raises an error
 * (ERRCODE_PROTOCOL_VIOLATION, or ERRCODE_FEATURE_NOT_SUPPORTED for
 * commands durable does not implement yet): none of it may be stored.
 */
extern void attempt_decode_response(Attempt *a, AttemptEffects *fx);

/* Has the transfer finished, or did new messages arrive? */
extern bool attempt_has_news(const Attempt *a);

/*
 * Streaming attempts.  A notification journaled for the invocation is
 * queued (before commit) and sent after commit with attempt_send_queued
 * (which returns whether anything was sent), or dropped with
 * attempt_discard_queued if the transaction failed.
 */
extern void attempt_queue_notification(Attempt *a, uint16 type,
									   const char *raw, int rawlen);
extern bool attempt_send_queued(Attempt *a);
extern void attempt_discard_queued(Attempt *a);
/* Ends the request stream: the service suspends when it next waits. */
extern void attempt_close_input(Attempt *a);

/* Text from a service made safe for a text column (invalid UTF-8 escaped). */
extern char *attempt_text(const char *data, size_t len);

#endif							/* DURABLE_ATTEMPT_H */
