/*-------------------------------------------------------------------------
 *
 * attempt.c
 *	  The protocol session of one attempt: the request we send (StartMessage
 *	  plus the whole journal) and the decoding of the service's answer into
 *	  a list of effects.
 *
 * The request body carries Start and every journaled entry.  In
 * request/response mode it ends there; the service replays, runs until it
 * needs something it does not have, and answers with new commands followed
 * by End, Suspension or Error.  In streaming mode (BIDI_STREAM) it stays
 * open: notifications are queued on it as they are committed, and the
 * answer is decoded a piece at a time as it arrives.  Either way the answer
 * is decoded strictly in order and checked against the journal the service
 * knows: a run result must belong to a Run command that has none yet,
 * nothing may follow Output, and no command may reuse a completion id.  A
 * piece that breaks these rules raises an error, so that none of it is
 * stored.
 *
 * Nothing here touches a table; lifecycle.c turns the effects into status
 * transitions and journal_store.c stores them.
 *
 * IDENTIFICATION
 *	  src/attempt.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "attempt.h"
#include "durable.h"
#include "protocol.h"
#include "protocol.pb-c.h"
#include "utf8.h"

Attempt *
attempt_create(MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "durable attempt",
											  ALLOCSET_SMALL_SIZES);
	Attempt    *a = MemoryContextAllocZero(cxt, sizeof(Attempt));
	MemoryContext old = MemoryContextSwitchTo(cxt);

	a->cxt = cxt;
	initStringInfo(&a->journal_bytes);
	initStringInfo(&a->request);
	MemoryContextSwitchTo(old);
	return a;
}

void
attempt_destroy(Attempt *a)
{
	/* A started transfer owns the header list and frees it. */
	if (a->started)
	{
		http_client_release(&a->transfer);
		frame_reader_release(&a->reader);
	}
	else if (a->request_headers != NULL)
		curl_slist_free_all(a->request_headers);
	MemoryContextDelete(a->cxt);
}

void
attempt_add_state_entry(Attempt *a, const char *key, int keylen,
						const char *value, int valuelen)
{
	MemoryContext old = MemoryContextSwitchTo(a->cxt);
	Wire__StartMessage__StateEntry *e = palloc(sizeof(*e));

	wire__start_message__state_entry__init(e);
	e->key.data = (uint8 *) pnstrdup(key, keylen);
	e->key.len = keylen;
	e->value.data = (uint8 *) palloc(Max(valuelen, 1));
	memcpy(e->value.data, value, valuelen);
	e->value.len = valuelen;
	a->state_entries = lappend(a->state_entries, e);
	MemoryContextSwitchTo(old);
}

/* Reads a protobuf varint at *p (bounded by end); false if malformed. */
static bool
read_varint(const uint8 **p, const uint8 *end, uint64 *value)
{
	uint64		v = 0;
	int			shift = 0;

	do
	{
		if (*p >= end || shift > 63)
			return false;
		v |= (uint64) (**p & 0x7F) << shift;
		shift += 7;
	} while (*(*p)++ & 0x80);
	*value = v;
	return true;
}

/*
 * Reads two fields of any message without knowing its type: a varint id
 * (field id_field) and a string name (field name_field, 0: none).  Commands
 * keep result_completion_id in 11 and the entry name in 12, notifications
 * their completion id in 1.  Doubles as a well-formedness check, since
 * commands are stored verbatim.
 */
static bool
scan_fields(const uint8 *p, size_t len, int id_field, int name_field,
			uint32 *id, const uint8 **name, size_t *namelen)
{
	const uint8 *end = p + len;

	*id = 0;
	if (name)
	{
		*name = NULL;
		*namelen = 0;
	}
	while (p < end)
	{
		uint64		key;
		uint64		v;
		int			field;

		if (!read_varint(&p, end, &key))
			return false;
		field = (int) (key >> 3);

		switch (key & 7)
		{
			case 0:				/* varint */
				if (!read_varint(&p, end, &v))
					return false;
				if (field == id_field)
					*id = (uint32) v;
				break;
			case 1:				/* 64-bit */
				if (end - p < 8)
					return false;
				p += 8;
				break;
			case 2:				/* length-delimited */
				if (!read_varint(&p, end, &v) || v > (uint64) (end - p))
					return false;
				if (name && field == name_field)
				{
					*name = p;
					*namelen = (size_t) v;
				}
				p += v;
				break;
			case 5:				/* 32-bit */
				if (end - p < 4)
					return false;
				p += 4;
				break;
			default:
				return false;
		}
	}
	return true;
}

/* The journal's record of one completion id; NULL if unknown and !create. */
static CompletionSeen *
completion_seen(Attempt *a, uint32 completion_id, bool create)
{
	bool		found;
	CompletionSeen *c;

	if (a->completions == NULL)
	{
		HASHCTL		ctl;

		if (!create)
			return NULL;
		ctl.keysize = sizeof(uint32);
		ctl.entrysize = sizeof(CompletionSeen);
		ctl.hcxt = a->cxt;
		a->completions = hash_create("durable attempt completions", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	c = hash_search(a->completions, &completion_id,
					create ? HASH_ENTER : HASH_FIND, &found);
	if (c != NULL && !found)
	{
		c->is_run = false;
		c->completed = false;
	}
	return c;
}

/*
 * Adds a stored journal entry to the request, and remembers what the
 * response will be checked against.
 */
static void
note_entry(Attempt *a, uint16 type, const char *raw, int rawlen)
{
	uint32		id;

	if (type == MSG_OUTPUT_COMMAND)
		a->output_journaled = true;
	if (MSG_IS_COMMAND(type) &&
		scan_fields((const uint8 *) raw, rawlen, 11, 0, &id, NULL, NULL) && id != 0)
		completion_seen(a, id, true)->is_run |= (type == MSG_RUN_COMMAND);
	/* A call's invocation id is a completion of its own (field 10). */
	if ((type == MSG_CALL_COMMAND || type == MSG_ONE_WAY_CALL_COMMAND) &&
		scan_fields((const uint8 *) raw, rawlen, 10, 0, &id, NULL, NULL) && id != 0)
		(void) completion_seen(a, id, true);
	else if (MSG_IS_NOTIFICATION(type) &&
			 scan_fields((const uint8 *) raw, rawlen, 1, 0, &id, NULL, NULL) && id != 0)
		completion_seen(a, id, true)->completed = true;
}

void
attempt_add_journal_entry(Attempt *a, uint16 type, const char *raw, int rawlen)
{
	uint8		header[PROTOCOL_FRAME_HEADER_SIZE];

	frame_header_write(header, type, 0, (uint32) rawlen);
	appendBinaryStringInfo(&a->journal_bytes, (char *) header, sizeof(header));
	appendBinaryStringInfo(&a->journal_bytes, raw, rawlen);
	a->known_entries++;
	note_entry(a, type, raw, rawlen);
}

static void
append_frame(StringInfo buf, uint16 type, const ProtobufCMessage *msg)
{
	size_t		len = protobuf_c_message_get_packed_size(msg);
	uint8		header[PROTOCOL_FRAME_HEADER_SIZE];

	frame_header_write(header, type, 0, (uint32) len);
	appendBinaryStringInfo(buf, (char *) header, sizeof(header));
	enlargeStringInfo(buf, (int) len);
	protobuf_c_message_pack(msg, (uint8 *) buf->data + buf->len);
	buf->len += (int) len;
	buf->data[buf->len] = '\0';
}

static struct curl_slist *
add_header(struct curl_slist *list, const char *header)
{
	struct curl_slist *l = curl_slist_append(list, header);

	if (l == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return l;
}

static char *
url_escape(const char *s)
{
	char	   *escaped = curl_easy_escape(NULL, s, 0);
	char	   *result;

	if (escaped == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	result = pstrdup(escaped);
	curl_free(escaped);
	return result;
}

/*
 * Builds the URL, the headers and the request body: StartMessage followed
 * by every journaled entry, byte for byte as stored.
 */
void
attempt_prepare_request(Attempt *a)
{
	MemoryContext old = MemoryContextSwitchTo(a->cxt);
	Wire__StartMessage start = WIRE__START_MESSAGE__INIT;
	Wire__StartMessage__StateEntry **state = NULL;
	int			nstate = list_length(a->state_entries);
	char	   *content_type;
	struct curl_slist *headers = NULL;

	if (!invocation_id_parse(a->invocation_id, a->invocation_id_raw))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored invocation id \"%s\" is malformed", a->invocation_id)));

	if (nstate > 0)
	{
		int			i = 0;
		ListCell   *lc;

		state = palloc(sizeof(*state) * nstate);
		foreach(lc, a->state_entries)
			state[i++] = lfirst(lc);
	}

	start.id.data = a->invocation_id_raw;
	start.id.len = INVOCATION_ID_RAW_LEN;
	start.debug_id = a->invocation_id;
	start.known_entries = a->known_entries;
	start.n_state_map = nstate;
	start.state_map = state;
	/* Keyed targets get their whole state eagerly; others have none. */
	start.partial_state = (a->service_key == NULL);
	start.key = a->service_key ? a->service_key : "";
	start.retry_count_since_last_stored_entry = a->retry_count_since_last_stored_entry;
	start.duration_since_last_stored_entry = (uint64) a->ms_since_last_stored_entry;
	if (a->protocol_version >= 6)
		start.random_seed = a->random_seed;

	resetStringInfo(&a->request);
	append_frame(&a->request, MSG_START, &start.base);
	appendBinaryStringInfo(&a->request, a->journal_bytes.data, a->journal_bytes.len);
	/* The request holds the journal now; do not keep it twice. */
	pfree(a->journal_bytes.data);
	initStringInfo(&a->journal_bytes);

	a->url = psprintf("%s/invoke/%s/%s", a->uri,
					  url_escape(a->service_name), url_escape(a->handler_name));

	content_type = psprintf("application/vnd.restate.invocation.v%d", a->protocol_version);
	headers = add_header(headers, psprintf("content-type: %s", content_type));
	headers = add_header(headers, psprintf("accept: %s", content_type));
	headers = add_header(headers, psprintf("x-restate-invocation-id: %s", a->invocation_id));
	if (a->service_key != NULL)
		headers = add_header(headers, psprintf("x-restate-service-key: %s",
											   url_escape(a->service_key)));
	/* No "Expect: 100-continue" round trip on HTTP/1.1. */
	headers = add_header(headers, "Expect:");
	if (a->deployment_headers != NULL)
	{
		char	   *lines = pstrdup(a->deployment_headers);
		char	   *save = NULL;

		for (char *line = strtok_r(lines, "\n", &save); line != NULL;
			 line = strtok_r(NULL, "\n", &save))
			headers = add_header(headers, line);
	}
	a->request_headers = headers;
	a->expected_content_type = content_type;
	MemoryContextSwitchTo(old);
}

void
attempt_start(Attempt *a)
{
	/* The response buffer must live as long as the attempt. */
	MemoryContext old = MemoryContextSwitchTo(a->cxt);

	Assert(!a->started && a->uri != NULL && a->request.len > 0);

	a->transfer.owner = a;
	frame_reader_init(&a->reader, a->cxt, (size_t) durable_max_message_size,
					  (size_t) durable_max_response_size);
	if (a->bidi)
		http_client_start_stream(&a->transfer, a->url,
								 http_version_from_text(a->http_version),
								 a->request_headers,
								 a->request.data, a->request.len,
								 frame_reader_sink, &a->reader);
	else
		http_client_start_post(&a->transfer, a->url,
							   http_version_from_text(a->http_version),
							   a->request_headers,
							   a->request.data, a->request.len,
							   a->inactivity_timeout_ms, a->abort_timeout_ms,
							   frame_reader_sink, &a->reader);
	a->reader.other_charge = a->transfer.body_charged;
	a->started = true;
	a->last_activity = GetCurrentTimestamp();
	a->journal_cursor = a->pending_cursor = a->known_entries;
	MemoryContextSwitchTo(old);
}

/* ----------------------------------------------------------------------
 * Decoding a response
 * ----------------------------------------------------------------------
 */

/*
 * Text from a service for a text column or a log line.  Services may send
 * any bytes; stored as they are, invalid UTF-8 would make a later dump of
 * the database (or of a table that copied the text) fail to restore.  In a
 * UTF-8 database invalid sequences and NUL bytes become U+FFFD; in a
 * database of another encoding every non-ASCII byte becomes '?'.
 */
char *
attempt_text(const char *data, size_t len)
{
	char	   *s;

	if (GetDatabaseEncoding() == PG_UTF8)
		return utf8_make_valid(data, len);
	s = palloc(len + 1);
	for (size_t i = 0; i < len; i++)
		s[i] = (data[i] > 0 && (unsigned char) data[i] < 0x80) ? data[i] : '?';
	s[len] = '\0';
	return s;
}

/*
 * What decoding has seen so far of the response.  It lives as long as the
 * attempt (in its context): a streaming attempt is decoded a piece at a
 * time.
 */
struct DecodeState
{
	MemoryContext cxt;
	bool		output_seen;	/* in the journal or in this response */
	List	   *state;			/* of StateWrite *: the object's state now */
};

#define DECODE(type_, fn_, body_, len_, msg_type_) \
	((type_ *) decode_or_error((ProtobufCMessage *) fn_(&protocol_allocator, (len_), (body_)), (msg_type_)))

static void *
decode_or_error(ProtobufCMessage *msg, uint16 type)
{
	if (msg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("service sent an undecodable %s message",
						protocol_message_name(type))));
	return msg;
}

/* The service broke the protocol: nothing of its response may be kept. */
#define protocol_violation(...) \
	ereport(ERROR, \
			(errcode(ERRCODE_PROTOCOL_VIOLATION), errmsg_internal(__VA_ARGS__)))

static void
set_failure(AttemptEffects *fx, int code, int64 retry_delay_ms, const char *fmt,...)
	pg_attribute_printf(4, 5);

static void
set_failure(AttemptEffects *fx, int code, int64 retry_delay_ms, const char *fmt,...)
{
	StringInfoData msg;

	initStringInfo(&msg);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&msg, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&msg, needed);
	}
	fx->end = ATTEMPT_END_FAILED;
	fx->failure_code = code;
	fx->failure_message = attempt_text(msg.data, msg.len);
	fx->retry_delay_ms = retry_delay_ms;
}

/* Why a transfer ended without a terminal message. */
static void
set_transport_failure(Attempt *a, AttemptEffects *fx)
{
	HttpTransfer *t = &a->transfer;
	FrameReader *r = &a->reader;

	if (r->refusal == FRAME_READER_OVER_BUDGET ||
		r->refusal == FRAME_READER_OUT_OF_MEMORY)
		set_failure(fx, FAILURE_UNREACHABLE, -1, "%s", frame_reader_refusal_message(r));
	else if (r->refusal != FRAME_READER_OK)
		set_failure(fx, FAILURE_TOO_LARGE, -1, "%s", frame_reader_refusal_message(r));
	else if (a->bidi && t->result == CURLE_OPERATION_TIMEDOUT && r->len > r->complete_offset)
	{
		/*
		 * libcurl 7.88 does not report the end of an HTTP/2 response while
		 * the request stream is still open, so a streamed response cut off
		 * mid-message shows as silence once its request was ended.
		 */
		set_failure(fx, FAILURE_PROTOCOL_VIOLATION, -1,
					"service stream stopped in the middle of a message (%zu bytes left over)",
					r->len - r->complete_offset);
	}
	else if (t->result == CURLE_OPERATION_TIMEDOUT)
		set_failure(fx, FAILURE_TIMEOUT, -1, "attempt timed out: %s",
					t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result));
	else if (t->result != CURLE_OK)
		set_failure(fx, FAILURE_UNREACHABLE, -1, "could not reach service at %s: %s", a->url,
					t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result));
	else if (r->len > r->complete_offset)
		set_failure(fx, FAILURE_PROTOCOL_VIOLATION, -1,
					"service stream ended in the middle of a message (%zu bytes left over)",
					r->len - r->complete_offset);
	else
		set_failure(fx, FAILURE_PROTOCOL_VIOLATION, -1,
					"service stream ended without End, Suspension or Error");
}

static NewEntry *
add_entry(AttemptEffects *fx, uint16 type, const uint8 *raw, size_t len)
{
	NewEntry   *e = palloc0(sizeof(NewEntry));

	e->type = type;
	e->raw = raw;
	e->len = len;
	fx->entries = lappend(fx->entries, e);
	return e;
}

/* Encodes a notification the runtime adds to the journal. */
static void
add_notification(Attempt *a, AttemptEffects *fx, uint16 type,
				 Wire__NotificationMessage *n)
{
	size_t		len = protobuf_c_message_get_packed_size(&n->base);
	uint8	   *buf = palloc(Max(len, 1));
	NewEntry   *e;

	protobuf_c_message_pack(&n->base, buf);
	e = add_entry(fx, type, buf, len);
	Assert(n->id_case == WIRE__NOTIFICATION_MESSAGE__ID_COMPLETION_ID);
	e->completion_id = n->completion_id;
	completion_seen(a, n->completion_id, true)->completed = true;
}

/* What a CompleteAwakeable or SendSignal carries: a failure, a value or nothing. */
static NotificationResult
notification_result(const Wire__Failure *failure, const Wire__Value *value)
{
	NotificationResult result = {RESULT_VOID};

	if (failure != NULL)
	{
		result.kind = RESULT_FAILURE;
		result.failure_code = failure->code;
		result.failure_message = failure->message;
		result.failure_metadata = protocol_failure_metadata(failure);
	}
	else if (value != NULL)
	{
		result.kind = RESULT_VALUE;
		result.value = value->content.data;
		result.value_len = value->content.len;
	}
	return result;
}

/* Queues a signal for another invocation. */
static void
add_signal(AttemptEffects *fx, char *target, uint32 index, char *name,
		   NotificationResult *result)
{
	OutgoingSignal *s = palloc0(sizeof(OutgoingSignal));

	if (result->kind == RESULT_FAILURE)
		result->failure_message = result->failure_message ?
			attempt_text(result->failure_message, strlen(result->failure_message)) : "";
	s->invocation_id = target;
	s->signal_index = index;
	s->signal_name = name;
	s->raw = protocol_signal_notification(index, name, result, &s->len);
	fx->signals = lappend(fx->signals, s);
}

/*
 * A Sleep's wake-up time: milliseconds since the Unix epoch.  One beyond
 * what a timestamptz can hold means never (it is not wrapped around).
 */
static TimestampTz
wake_up_time(uint64 unix_ms)
{
	const int64 epoch_offset_ms =
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	if (unix_ms > (uint64) (END_TIMESTAMP / 1000 + epoch_offset_ms))
		return DT_NOEND;
	return ((int64) unix_ms - epoch_offset_ms) * 1000;
}

/* A completion id a command takes besides its result's (field 11). */
static void
take_completion_id(Attempt *a, uint32 id, uint16 msg_type)
{
	if (id == 0)
		protocol_violation("service sent a %s command without a completion id",
						   protocol_message_name(msg_type));
	if (completion_seen(a, id, false) != NULL)
		protocol_violation("service sent a %s command with completion id %u, which an earlier entry already uses",
						   protocol_message_name(msg_type), id);
	(void) completion_seen(a, id, true);
}

static char *
required_text(const char *s, const char *what, uint16 msg_type)
{
	if (s == NULL || s[0] == '\0')
		protocol_violation("service sent a %s command without a %s",
						   protocol_message_name(msg_type), what);
	return attempt_text(s, strlen(s));
}

/* A Call (result_completion != 0) or OneWayCall, to create when stored. */
static void
add_call(Attempt *a, AttemptEffects *fx, NewEntry *e, const char *service,
		 const char *handler, const char *key, const char *idempotency_key,
		 const ProtobufCBinaryData *parameter, size_t n_headers,
		 Wire__Header **headers, uint64 invoke_time,
		 uint32 invocation_id_completion, uint32 result_completion)
{
	OutgoingCall *c = palloc0(sizeof(OutgoingCall));

	take_completion_id(a, invocation_id_completion, e->type);
	if (result_completion == 0 && e->type == MSG_CALL_COMMAND)
		protocol_violation("service sent a Call command without a result completion id");
	c->command = e;
	c->service_name = required_text(service, "service name", e->type);
	c->handler_name = required_text(handler, "handler name", e->type);
	c->key = attempt_text(key ? key : "", key ? strlen(key) : 0);
	if (idempotency_key != NULL)
		c->idempotency_key = attempt_text(idempotency_key, strlen(idempotency_key));
	c->parameter = parameter->data;
	c->parameter_len = parameter->len;
	c->n_headers = (int) n_headers;
	c->header_names = palloc(sizeof(char *) * Max(n_headers, 1));
	c->header_values = palloc(sizeof(char *) * Max(n_headers, 1));
	for (size_t i = 0; i < n_headers; i++)
	{
		const char *k = headers[i]->key ? headers[i]->key : "";
		const char *v = headers[i]->value ? headers[i]->value : "";

		c->header_names[i] = attempt_text(k, strlen(k));
		c->header_values[i] = attempt_text(v, strlen(v));
	}
	c->invoke_at = invoke_time > 0 ? wake_up_time(invoke_time) : 0;
	c->invocation_id_completion = invocation_id_completion;
	c->result_completion = result_completion;
	fx->calls = lappend(fx->calls, c);
}

/* GetPromise, PeekPromise, CompletePromise: a workflow's own promises. */
static void
add_promise_lookup(Attempt *a, AttemptEffects *fx, LookupKind kind,
				   uint16 notification_type, uint32 completion_id, const char *name,
				   const Wire__Failure *failure, const Wire__Value *value)
{
	CommandLookup *l = palloc0(sizeof(CommandLookup));

	if (a->service_key == NULL)
		protocol_violation("service \"%s\" is not a workflow and has no promises",
						   a->service_name);
	if (completion_id == 0)
		protocol_violation("service sent a promise command without a completion id");
	l->kind = kind;
	l->notification_type = notification_type;
	l->completion_id = completion_id;
	l->promise_name = attempt_text(name ? name : "", name ? strlen(name) : 0);
	if (kind == LOOKUP_COMPLETE_PROMISE)
	{
		if (failure == NULL && value == NULL)
			protocol_violation("service completed a promise without a value or a failure");
		l->promise_result = notification_result(failure, value);
		if (l->promise_result.kind == RESULT_FAILURE)
			l->promise_result.failure_message = l->promise_result.failure_message ?
				attempt_text(l->promise_result.failure_message,
							 strlen(l->promise_result.failure_message)) : "";
	}
	fx->lookups = lappend(fx->lookups, l);
}

/* AttachInvocation, GetInvocationOutput: by id, idempotency key or workflow key. */
static void
add_invocation_lookup(AttemptEffects *fx, LookupKind kind, uint16 notification_type,
					  uint32 completion_id, const char *invocation_id,
					  const Wire__IdempotentRequestTarget *idempotent,
					  const Wire__WorkflowTarget *workflow)
{
	CommandLookup *l = palloc0(sizeof(CommandLookup));

	if (completion_id == 0)
		protocol_violation("service sent an attach or output command without a completion id");
	l->kind = kind;
	l->notification_type = notification_type;
	l->completion_id = completion_id;
	if (invocation_id != NULL)
		l->target_id = attempt_text(invocation_id, strlen(invocation_id));
	else if (idempotent != NULL)
	{
		l->target_service = required_text(idempotent->service_name, "service name",
										  MSG_ATTACH_INVOCATION_COMMAND);
		l->target_handler = required_text(idempotent->handler_name, "handler name",
										  MSG_ATTACH_INVOCATION_COMMAND);
		if (idempotent->opt_service_key_case ==
			WIRE__IDEMPOTENT_REQUEST_TARGET__OPT_SERVICE_KEY_SERVICE_KEY)
			l->target_key = attempt_text(idempotent->service_key,
										 strlen(idempotent->service_key));
		l->target_idempotency_key = required_text(idempotent->idempotency_key,
												  "idempotency key",
												  MSG_ATTACH_INVOCATION_COMMAND);
	}
	else if (workflow != NULL)
	{
		l->target_service = required_text(workflow->workflow_name, "workflow name",
										  MSG_ATTACH_INVOCATION_COMMAND);
		l->target_key = attempt_text(workflow->workflow_key ? workflow->workflow_key : "",
									 workflow->workflow_key ? strlen(workflow->workflow_key) : 0);
	}
	else
		protocol_violation("service sent an attach or output command without a target");
	fx->lookups = lappend(fx->lookups, l);
}

/* State keys are strings in every SDK; refuse bytes that are not text. */
static char *
state_key(Attempt *a, const uint8 *key, size_t keylen)
{
	char	   *s;

	if (a->service_key == NULL)
		protocol_violation("service \"%s\" is not keyed and has no state",
						   a->service_name);
	s = palloc(keylen + 1);
	memcpy(s, key, keylen);
	s[keylen] = '\0';
	if (strlen(s) != keylen || !pg_verifymbstr(s, keylen, true))
		protocol_violation("state key is not valid text");
	return s;
}

/* Records a state write and keeps the in-memory state current. */
static void
write_state(DecodeState *st, AttemptEffects *fx, StateWriteKind kind,
			char *key, const uint8 *value, size_t len)
{
	StateWrite *w = palloc0(sizeof(StateWrite));
	ListCell   *lc;
	MemoryContext old;

	w->kind = kind;
	w->key = key;
	w->value = value;
	w->len = len;
	fx->state_writes = lappend(fx->state_writes, w);

	/* The state as the handler sees it outlives this piece of the response. */
	old = MemoryContextSwitchTo(st->cxt);
	if (kind == STATE_WRITE_CLEAR_ALL)
		st->state = NIL;
	else
	{
		foreach(lc, st->state)
		{
			StateWrite *s = lfirst(lc);

			if (strcmp(s->key, key) == 0)
			{
				st->state = foreach_delete_current(st->state, lc);
				break;
			}
		}
		if (kind == STATE_WRITE_SET)
		{
			StateWrite *kept = palloc0(sizeof(StateWrite));
			uint8	   *copy = palloc(Max(len, 1));

			memcpy(copy, value, len);
			kept->kind = kind;
			kept->key = pstrdup(key);
			kept->value = copy;
			kept->len = len;
			st->state = lappend(st->state, kept);
		}
	}
	MemoryContextSwitchTo(old);
}

static StateWrite *
read_state(DecodeState *st, const char *key)
{
	ListCell   *lc;

	foreach(lc, st->state)
	{
		StateWrite *s = lfirst(lc);

		if (strcmp(s->key, key) == 0)
			return s;
	}
	return NULL;
}

static void
decode_command(Attempt *a, DecodeState *st, AttemptEffects *fx,
			   uint16 msg_type, const uint8 *body, uint32 len)
{
	const uint8 *name;
	size_t		namelen;
	uint32		completion_id;
	NewEntry   *e;

	if (!scan_fields(body, len, 11, 12, &completion_id, &name, &namelen))
		protocol_violation("service sent a malformed %s command",
						   protocol_message_name(msg_type));
	if (st->output_seen)
		protocol_violation("service sent a %s command after the Output command",
						   protocol_message_name(msg_type));
	if (completion_id != 0)
	{
		CompletionSeen *c = completion_seen(a, completion_id, false);

		if (c != NULL)
			protocol_violation("service sent a %s command with completion id %u, which an earlier entry already uses",
							   protocol_message_name(msg_type), completion_id);
		completion_seen(a, completion_id, true)->is_run = (msg_type == MSG_RUN_COMMAND);
	}

	/* Commands not implemented yet must not be journaled. */
	switch (msg_type)
	{
		case MSG_OUTPUT_COMMAND:
		case MSG_SET_STATE_COMMAND:
		case MSG_CLEAR_STATE_COMMAND:
		case MSG_CLEAR_ALL_STATE_COMMAND:
		case MSG_GET_EAGER_STATE_COMMAND:
		case MSG_GET_EAGER_STATE_KEYS_COMMAND:
		case MSG_GET_LAZY_STATE_COMMAND:
		case MSG_GET_LAZY_STATE_KEYS_COMMAND:
		case MSG_RUN_COMMAND:
		case MSG_SLEEP_COMMAND:
		case MSG_COMPLETE_AWAKEABLE_COMMAND:
		case MSG_SEND_SIGNAL_COMMAND:
		case MSG_CALL_COMMAND:
		case MSG_ONE_WAY_CALL_COMMAND:
		case MSG_GET_PROMISE_COMMAND:
		case MSG_PEEK_PROMISE_COMMAND:
		case MSG_COMPLETE_PROMISE_COMMAND:
		case MSG_ATTACH_INVOCATION_COMMAND:
		case MSG_GET_INVOCATION_OUTPUT_COMMAND:
			break;
		default:
			if (!MSG_IS_CUSTOM(msg_type))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("the %s command (0x%04X) is not supported by durable yet",
								protocol_message_name(msg_type), msg_type)));
			break;
	}

	e = add_entry(fx, msg_type, body, len);
	e->completion_id = completion_id;
	if (name != NULL && namelen > 0)
		e->name = attempt_text((const char *) name, namelen);

	switch (msg_type)
	{
		case MSG_OUTPUT_COMMAND:
			{
				Wire__OutputCommandMessage *m =
					DECODE(Wire__OutputCommandMessage,
						   wire__output_command_message__unpack, body, len, msg_type);

				st->output_seen = true;
				if (m->result_case == WIRE__OUTPUT_COMMAND_MESSAGE__RESULT_FAILURE &&
					m->failure != NULL)
				{
					fx->output_failed = true;
					fx->output_failure_code = (int) Min(m->failure->code, (uint32) PG_INT32_MAX);
					fx->output_failure_metadata = protocol_failure_metadata(m->failure);
					fx->output_failure_message =
						m->failure->message ? attempt_text(m->failure->message,
														   strlen(m->failure->message)) : "";
				}
				else if (m->result_case == WIRE__OUTPUT_COMMAND_MESSAGE__RESULT_VALUE &&
						 m->value != NULL)
				{
					fx->output = m->value->content.data;
					fx->output_len = m->value->content.len;
				}
				break;
			}
		case MSG_SET_STATE_COMMAND:
			{
				Wire__SetStateCommandMessage *m =
					DECODE(Wire__SetStateCommandMessage,
						   wire__set_state_command_message__unpack, body, len, msg_type);

				write_state(st, fx, STATE_WRITE_SET,
							state_key(a, m->key.data, m->key.len),
							m->value ? m->value->content.data : (const uint8 *) "",
							m->value ? m->value->content.len : 0);
				break;
			}
		case MSG_CLEAR_STATE_COMMAND:
			{
				Wire__ClearStateCommandMessage *m =
					DECODE(Wire__ClearStateCommandMessage,
						   wire__clear_state_command_message__unpack, body, len, msg_type);

				write_state(st, fx, STATE_WRITE_CLEAR,
							state_key(a, m->key.data, m->key.len), NULL, 0);
				break;
			}
		case MSG_CLEAR_ALL_STATE_COMMAND:
			(void) state_key(a, (const uint8 *) "", 0);
			write_state(st, fx, STATE_WRITE_CLEAR_ALL, NULL, NULL, 0);
			break;
		case MSG_GET_LAZY_STATE_COMMAND:
			{
				/* Answered right away, from the state as it is now. */
				Wire__GetLazyStateCommandMessage *m =
					DECODE(Wire__GetLazyStateCommandMessage,
						   wire__get_lazy_state_command_message__unpack, body, len, msg_type);
				Wire__NotificationMessage n = WIRE__NOTIFICATION_MESSAGE__INIT;
				Wire__Void v = WIRE__VOID__INIT;
				Wire__Value value = WIRE__VALUE__INIT;
				StateWrite *s = read_state(st, state_key(a, m->key.data, m->key.len));

				n.id_case = WIRE__NOTIFICATION_MESSAGE__ID_COMPLETION_ID;
				n.completion_id = completion_id;
				if (s != NULL)
				{
					value.content.data = (uint8 *) s->value;
					value.content.len = s->len;
					n.result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_VALUE;
					n.value = &value;
				}
				else
				{
					n.result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_VOID;
					n.void_ = &v;
				}
				add_notification(a, fx, MSG_GET_LAZY_STATE_COMPLETION, &n);
				break;
			}
		case MSG_GET_LAZY_STATE_KEYS_COMMAND:
			{
				Wire__NotificationMessage n = WIRE__NOTIFICATION_MESSAGE__INIT;
				Wire__StateKeys keys = WIRE__STATE_KEYS__INIT;
				ListCell   *lc;
				int			i = 0;

				(void) state_key(a, (const uint8 *) "", 0);
				keys.n_keys = list_length(st->state);
				keys.keys = palloc(sizeof(ProtobufCBinaryData) * Max(keys.n_keys, 1));
				foreach(lc, st->state)
				{
					StateWrite *s = lfirst(lc);

					keys.keys[i].data = (uint8 *) s->key;
					keys.keys[i].len = strlen(s->key);
					i++;
				}
				n.id_case = WIRE__NOTIFICATION_MESSAGE__ID_COMPLETION_ID;
				n.completion_id = completion_id;
				n.result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_STATE_KEYS;
				n.state_keys = &keys;
				add_notification(a, fx, MSG_GET_LAZY_STATE_KEYS_COMPLETION, &n);
				break;
			}
		case MSG_SLEEP_COMMAND:
			{
				Wire__SleepCommandMessage *m =
					DECODE(Wire__SleepCommandMessage,
						   wire__sleep_command_message__unpack, body, len, msg_type);
				NewTimer   *t = palloc(sizeof(NewTimer));

				t->completion_id = m->result_completion_id;
				t->wake_at = wake_up_time(m->wake_up_time);
				fx->timers = lappend(fx->timers, t);
				break;
			}
		case MSG_COMPLETE_AWAKEABLE_COMMAND:
			{
				Wire__CompleteAwakeableCommandMessage *m =
					DECODE(Wire__CompleteAwakeableCommandMessage,
						   wire__complete_awakeable_command_message__unpack, body, len, msg_type);
				uint8		target[INVOCATION_ID_RAW_LEN];
				uint32		index;
				NotificationResult result;

				/*
				 * A handler may pass anything it was given as an awakeable id.
				 * One that is not an awakeable id completes nothing; the
				 * command is journaled all the same, so replay matches.
				 */
				if (!awakeable_id_parse(m->awakeable_id, target, &index))
				{
					ereport(LOG,
							(errmsg("durable: invocation %s completed an awakeable with the malformed id \"%s\", which completes nothing",
									a->invocation_id, attempt_text(m->awakeable_id, strlen(m->awakeable_id)))));
					break;
				}
				result = notification_result(m->result_case == WIRE__COMPLETE_AWAKEABLE_COMMAND_MESSAGE__RESULT_FAILURE ?
									   m->failure : NULL,
									   m->result_case == WIRE__COMPLETE_AWAKEABLE_COMMAND_MESSAGE__RESULT_VALUE ?
									   m->value : NULL);
				add_signal(fx, invocation_id_format(target), index, NULL, &result);
				break;
			}
		case MSG_SEND_SIGNAL_COMMAND:
			{
				Wire__SendSignalCommandMessage *m =
					DECODE(Wire__SendSignalCommandMessage,
						   wire__send_signal_command_message__unpack, body, len, msg_type);
				uint8		target[INVOCATION_ID_RAW_LEN];
				NotificationResult result;

				if (!invocation_id_parse(m->target_invocation_id, target))
				{
					ereport(LOG,
							(errmsg("durable: invocation %s sent a signal to the malformed invocation id \"%s\", which reaches nobody",
									a->invocation_id,
									attempt_text(m->target_invocation_id, strlen(m->target_invocation_id)))));
					break;
				}
				result = notification_result(m->result_case == WIRE__SEND_SIGNAL_COMMAND_MESSAGE__RESULT_FAILURE ?
									   m->failure : NULL,
									   m->result_case == WIRE__SEND_SIGNAL_COMMAND_MESSAGE__RESULT_VALUE ?
									   m->value : NULL);
				if (m->signal_id_case == WIRE__SEND_SIGNAL_COMMAND_MESSAGE__SIGNAL_ID_NAME)
					add_signal(fx, pstrdup(m->target_invocation_id), 0,
							   attempt_text(m->name, strlen(m->name)), &result);
				else if (m->signal_id_case == WIRE__SEND_SIGNAL_COMMAND_MESSAGE__SIGNAL_ID_IDX &&
						 m->idx != 0)
					add_signal(fx, pstrdup(m->target_invocation_id), m->idx, NULL, &result);
				else
					protocol_violation("service sent a signal without an index or a name");
				break;
			}
		case MSG_CALL_COMMAND:
			{
				Wire__CallCommandMessage *m =
					DECODE(Wire__CallCommandMessage,
						   wire__call_command_message__unpack, body, len, msg_type);

				add_call(a, fx, e, m->service_name, m->handler_name, m->key,
						 m->opt_idempotency_key_case ==
						 WIRE__CALL_COMMAND_MESSAGE__OPT_IDEMPOTENCY_KEY_IDEMPOTENCY_KEY ?
						 m->idempotency_key : NULL,
						 &m->parameter, m->n_headers, m->headers, 0,
						 m->invocation_id_notification_idx, m->result_completion_id);
				break;
			}
		case MSG_ONE_WAY_CALL_COMMAND:
			{
				Wire__OneWayCallCommandMessage *m =
					DECODE(Wire__OneWayCallCommandMessage,
						   wire__one_way_call_command_message__unpack, body, len, msg_type);

				add_call(a, fx, e, m->service_name, m->handler_name, m->key,
						 m->opt_idempotency_key_case ==
						 WIRE__ONE_WAY_CALL_COMMAND_MESSAGE__OPT_IDEMPOTENCY_KEY_IDEMPOTENCY_KEY ?
						 m->idempotency_key : NULL,
						 &m->parameter, m->n_headers, m->headers, m->invoke_time,
						 m->invocation_id_notification_idx, 0);
				break;
			}
		case MSG_GET_PROMISE_COMMAND:
		case MSG_PEEK_PROMISE_COMMAND:
			{
				/* PeekPromiseCommandMessage is GetPromiseCommandMessage on the wire. */
				Wire__GetPromiseCommandMessage *m =
					DECODE(Wire__GetPromiseCommandMessage,
						   wire__get_promise_command_message__unpack, body, len, msg_type);
				bool		get = (msg_type == MSG_GET_PROMISE_COMMAND);

				add_promise_lookup(a, fx, get ? LOOKUP_GET_PROMISE : LOOKUP_PEEK_PROMISE,
								   get ? MSG_GET_PROMISE_COMPLETION : MSG_PEEK_PROMISE_COMPLETION,
								   completion_id, m->key, NULL, NULL);
				break;
			}
		case MSG_COMPLETE_PROMISE_COMMAND:
			{
				Wire__CompletePromiseCommandMessage *m =
					DECODE(Wire__CompletePromiseCommandMessage,
						   wire__complete_promise_command_message__unpack, body, len, msg_type);

				add_promise_lookup(a, fx, LOOKUP_COMPLETE_PROMISE,
								   MSG_COMPLETE_PROMISE_COMPLETION, completion_id, m->key,
								   m->completion_case ==
								   WIRE__COMPLETE_PROMISE_COMMAND_MESSAGE__COMPLETION_COMPLETION_FAILURE ?
								   m->completion_failure : NULL,
								   m->completion_case ==
								   WIRE__COMPLETE_PROMISE_COMMAND_MESSAGE__COMPLETION_COMPLETION_VALUE ?
								   m->completion_value : NULL);
				break;
			}
		case MSG_ATTACH_INVOCATION_COMMAND:
		case MSG_GET_INVOCATION_OUTPUT_COMMAND:
			{
				/*
				 * GetInvocationOutputCommandMessage has the same fields, with
				 * the same numbers, as AttachInvocationCommandMessage: one
				 * decoder reads both.
				 */
				Wire__AttachInvocationCommandMessage *m =
					DECODE(Wire__AttachInvocationCommandMessage,
						   wire__attach_invocation_command_message__unpack, body, len, msg_type);
				bool		attach = (msg_type == MSG_ATTACH_INVOCATION_COMMAND);

				add_invocation_lookup(fx, attach ? LOOKUP_ATTACH : LOOKUP_GET_OUTPUT,
									  attach ? MSG_ATTACH_INVOCATION_COMPLETION :
									  MSG_GET_INVOCATION_OUTPUT_COMPLETION,
									  completion_id,
									  m->target_case == WIRE__ATTACH_INVOCATION_COMMAND_MESSAGE__TARGET_INVOCATION_ID ?
									  m->invocation_id : NULL,
									  m->target_case == WIRE__ATTACH_INVOCATION_COMMAND_MESSAGE__TARGET_IDEMPOTENT_REQUEST_TARGET ?
									  m->idempotent_request_target : NULL,
									  m->target_case == WIRE__ATTACH_INVOCATION_COMMAND_MESSAGE__TARGET_WORKFLOW_TARGET ?
									  m->workflow_target : NULL);
				break;
			}
		default:
			break;
	}
}

/*
 * Decodes one message.  Returns true when the message ended the attempt
 * (fx->end set), false to go on with the next one.
 */
static bool
decode_message(Attempt *a, DecodeState *st, AttemptEffects *fx,
			   uint16 msg_type, const uint8 *body, uint32 len)
{
	if (MSG_IS_COMMAND(msg_type))
	{
		decode_command(a, st, fx, msg_type, body, len);
		return false;
	}

	switch (msg_type)
	{
		case MSG_PROPOSE_RUN_COMPLETION:
			{
				Wire__ProposeRunCompletionMessage *m =
					DECODE(Wire__ProposeRunCompletionMessage,
						   wire__propose_run_completion_message__unpack, body, len, msg_type);
				Wire__NotificationMessage n = WIRE__NOTIFICATION_MESSAGE__INIT;
				Wire__Value value = WIRE__VALUE__INIT;
				CompletionSeen *c = completion_seen(a, m->result_completion_id, false);

				if (c == NULL || !c->is_run)
					protocol_violation("service proposed a result for completion id %u, which no Run command waits for",
									   m->result_completion_id);
				if (c->completed)
					protocol_violation("service proposed a second result for the Run command with completion id %u",
									   m->result_completion_id);
				n.id_case = WIRE__NOTIFICATION_MESSAGE__ID_COMPLETION_ID;
				n.completion_id = m->result_completion_id;
				if (m->result_case == WIRE__PROPOSE_RUN_COMPLETION_MESSAGE__RESULT_FAILURE)
				{
					n.result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_FAILURE;
					n.failure = m->failure;
				}
				else if (m->result_case == WIRE__PROPOSE_RUN_COMPLETION_MESSAGE__RESULT_VALUE)
				{
					value.content = m->value;
					n.result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_VALUE;
					n.value = &value;
				}
				else
					protocol_violation("service proposed a run completion without a result");
				add_notification(a, fx, MSG_RUN_COMPLETION, &n);
				return false;
			}
		case MSG_SUSPENSION:
			{
				Wire__SuspensionMessage *m =
					DECODE(Wire__SuspensionMessage,
						   wire__suspension_message__unpack, body, len, msg_type);

				if (st->output_seen)
					protocol_violation("service suspended after its Output command");
				if (m->n_waiting_completions + m->n_waiting_signals +
					m->n_waiting_named_signals == 0)
					protocol_violation("service suspended without waiting for anything");
				fx->end = ATTEMPT_END_SUSPENDED;
				fx->waits.n_completions = (int) m->n_waiting_completions;
				fx->waits.completions = m->waiting_completions;
				fx->waits.n_signals = (int) m->n_waiting_signals;
				fx->waits.signals = m->waiting_signals;
				fx->waits.n_named_signals = (int) m->n_waiting_named_signals;
				fx->waits.named_signals = palloc(sizeof(char *) * Max(m->n_waiting_named_signals, 1));
				for (size_t i = 0; i < m->n_waiting_named_signals; i++)
					fx->waits.named_signals[i] = attempt_text(m->waiting_named_signals[i],
															  strlen(m->waiting_named_signals[i]));
				return true;
			}
		case MSG_ERROR:
			{
				Wire__ErrorMessage *m =
					DECODE(Wire__ErrorMessage, wire__error_message__unpack, body, len, msg_type);
				int64		delay = -1;
				StringInfoData related;

				initStringInfo(&related);
				if (m->opt_next_retry_delay_case == WIRE__ERROR_MESSAGE__OPT_NEXT_RETRY_DELAY_NEXT_RETRY_DELAY)
					delay = (int64) Min(m->next_retry_delay, (uint64) PG_INT32_MAX);
				if (m->opt_related_command_index_case ==
					WIRE__ERROR_MESSAGE__OPT_RELATED_COMMAND_INDEX_RELATED_COMMAND_INDEX)
					appendStringInfo(&related, " (command %u", m->related_command_index);
				if (related.len > 0 &&
					m->opt_related_command_name_case ==
					WIRE__ERROR_MESSAGE__OPT_RELATED_COMMAND_NAME_RELATED_COMMAND_NAME &&
					m->related_command_name[0] != '\0')
					appendStringInfo(&related, " \"%s\"", m->related_command_name);
				if (related.len > 0)
					appendStringInfoChar(&related, ')');
				set_failure(fx, (int) Min(m->code, (uint32) PG_INT32_MAX), delay, "%s%s",
							m->message ? m->message : "", related.data);
				return true;
			}
		case MSG_END:
			fx->end = ATTEMPT_END_COMPLETED;
			return true;
		default:
			protocol_violation("service sent unexpected message type 0x%04X (%s)",
							   msg_type, protocol_message_name(msg_type));
	}
	return false;				/* keep compiler quiet */
}

static char *
printable(const char *data, size_t len)
{
	StringInfoData s;

	initStringInfo(&s);
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) data[i];

		appendStringInfoChar(&s, (c >= 0x20 && c < 0x7F) ? (char) c : '?');
	}
	return s.data;
}

/* The decoding state of an attempt, made on first use. */
static DecodeState *
decode_state(Attempt *a)
{
	DecodeState *st;
	ListCell   *lc;
	MemoryContext old;

	if (a->decode != NULL)
		return a->decode;

	old = MemoryContextSwitchTo(a->cxt);
	st = palloc0(sizeof(DecodeState));
	st->cxt = a->cxt;
	st->output_seen = a->output_journaled;
	/* The state the handler started with, for lazy reads. */
	foreach(lc, a->state_entries)
	{
		Wire__StartMessage__StateEntry *e = lfirst(lc);
		StateWrite *w = palloc0(sizeof(StateWrite));

		w->kind = STATE_WRITE_SET;
		w->key = pnstrdup((const char *) e->key.data, e->key.len);
		w->value = e->value.data;
		w->len = e->value.len;
		st->state = lappend(st->state, w);
	}
	a->decode = st;
	MemoryContextSwitchTo(old);
	return st;
}

bool
attempt_has_news(const Attempt *a)
{
	return a->transfer.finished ||
		(a->started && a->reader.complete_frames > a->frames_decoded);
}

void
attempt_decode_response(Attempt *a, AttemptEffects *fx)
{
	HttpTransfer *t = &a->transfer;
	FrameReader *r = &a->reader;
	DecodeState *st;
	size_t		offset;

	memset(fx, 0, sizeof(AttemptEffects));
	fx->end = ATTEMPT_END_NONE;
	fx->retry_delay_ms = -1;

	if (!a->started)
	{
		set_failure(fx, FAILURE_UNREACHABLE, -1, "could not start the HTTP request: %s",
					t->errbuf);
		return;
	}
	Assert(r->complete_offset <= r->len);

	/* Headers come before any frame, so a stream that has frames has them. */
	if (!t->status_ok)
	{
		if (!t->finished)
			return;
		if (t->status == 0)
			set_transport_failure(a, fx);
		else
			set_failure(fx, (int) Min(t->status, 599L), -1, "service answered HTTP %ld: %s",
						t->status, printable(t->error_body.data, t->error_body.len));
		return;
	}

	/* A response in another format cannot be trusted to mean anything. */
	if (!a->content_type_checked)
	{
		char	   *ct = NULL;

		curl_easy_getinfo(t->easy, CURLINFO_CONTENT_TYPE, &ct);
		if (ct == NULL || pg_strncasecmp(ct, a->expected_content_type,
										 strlen(a->expected_content_type)) != 0)
		{
			set_failure(fx, FAILURE_PROTOCOL_VIOLATION, -1,
						"service answered with content-type \"%s\", expected \"%s\"",
						ct ? printable(ct, strlen(ct)) : "", a->expected_content_type);
			return;
		}
		a->content_type_checked = true;
	}

	st = decode_state(a);

	/* What the last piece decoded is no longer referenced: drop it. */
	frame_reader_discard(r, a->decoded_bytes);
	a->decoded_bytes = 0;
	a->frames_decoded = r->complete_frames;

	offset = 0;
	while (offset < r->complete_offset)
	{
		uint16		type;
		uint16		flags;
		uint32		len;
		const uint8 *frame = (const uint8 *) r->data + offset;

		frame_header_read(frame, &type, &flags, &len);
		offset += PROTOCOL_FRAME_HEADER_SIZE + len;
		if (decode_message(a, st, fx, type, frame + PROTOCOL_FRAME_HEADER_SIZE, len))
			return;
	}
	a->decoded_bytes = offset;

	/* Complete messages were decoded; the stream still broke. */
	if (t->finished)
		set_transport_failure(a, fx);
}

/* ----------------------------------------------------------------------
 * Streaming: notifications sent while the attempt runs
 * ----------------------------------------------------------------------
 */

void
attempt_queue_notification(Attempt *a, uint16 type, const char *raw, int rawlen)
{
	MemoryContext old = MemoryContextSwitchTo(a->cxt);
	uint8		header[PROTOCOL_FRAME_HEADER_SIZE];

	Assert(a->bidi && MSG_IS_NOTIFICATION(type));
	if (a->outgoing.data == NULL)
		initStringInfo(&a->outgoing);
	frame_header_write(header, type, 0, (uint32) rawlen);
	appendBinaryStringInfo(&a->outgoing, (char *) header, sizeof(header));
	appendBinaryStringInfo(&a->outgoing, raw, rawlen);
	MemoryContextSwitchTo(old);
}

void
attempt_discard_queued(Attempt *a)
{
	if (a->outgoing.data != NULL)
		resetStringInfo(&a->outgoing);
	a->pending_cursor = a->journal_cursor;
}

bool
attempt_send_queued(Attempt *a)
{
	bool		sent = false;

	if (a->outgoing.data != NULL && a->outgoing.len > 0)
	{
		const char *p = a->outgoing.data;
		const char *end = p + a->outgoing.len;

		/* What the service now knows counts as journal it was sent. */
		while (p < end)
		{
			uint16		type;
			uint16		flags;
			uint32		len;

			frame_header_read((const uint8 *) p, &type, &flags, &len);
			note_entry(a, type, p + PROTOCOL_FRAME_HEADER_SIZE, (int) len);
			p += PROTOCOL_FRAME_HEADER_SIZE + len;
		}
		http_client_stream_send(&a->transfer, a->outgoing.data, a->outgoing.len);
		resetStringInfo(&a->outgoing);
		a->last_activity = GetCurrentTimestamp();
		sent = true;
	}
	a->journal_cursor = a->pending_cursor;
	return sent;
}

void
attempt_close_input(Attempt *a)
{
	Assert(a->bidi);
	if (a->input_closed)
		return;
	a->input_closed = true;
	a->input_closed_at = GetCurrentTimestamp();
	if (a->started)
		http_client_stream_close(&a->transfer);
}
