/*-------------------------------------------------------------------------
 *
 * attempt.c
 *	  One attempt of an invocation: the request we send (StartMessage plus
 *	  the whole journal) and what we make of the service's answer.
 *
 * Attempts run in request/response mode: the request body carries Start
 * and every journaled entry, then ends; the service replays, runs until it
 * needs something it does not have, and answers with new commands followed
 * by End, Suspension or Error.  We apply those messages strictly in order,
 * so that for example a run proposal is journaled before the Suspension
 * that waits for it is evaluated.
 *
 * IDENTIFICATION
 *	  src/attempt.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "attempt.h"
#include "durable.h"
#include "journal_store.h"
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

void
attempt_add_journal_entry(Attempt *a, uint16 type, const char *raw, int rawlen)
{
	uint8		header[PROTOCOL_FRAME_HEADER_SIZE];

	frame_header_write(header, type, 0, (uint32) rawlen);
	appendBinaryStringInfo(&a->journal_bytes, (char *) header, sizeof(header));
	appendBinaryStringInfo(&a->journal_bytes, raw, rawlen);
	a->known_entries++;
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
		elog(ERROR, "stored invocation id \"%s\" is malformed", a->invocation_id);

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
	http_client_start_post(&a->transfer, a->url,
						   http_version_from_text(a->http_version),
						   a->request_headers,
						   a->request.data, a->request.len,
						   a->inactivity_timeout_ms, a->abort_timeout_ms,
						   frame_reader_sink, &a->reader);
	a->reader.other_charge = a->transfer.body_charged;
	a->started = true;
	MemoryContextSwitchTo(old);
}

/* ----------------------------------------------------------------------
 * Applying a response
 * ----------------------------------------------------------------------
 */

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
 * Reads the common fields of any command without knowing its type: the
 * entry name (field 12) and result_completion_id (field 11).  Doubles as a
 * well-formedness check, since commands are stored verbatim.
 */
static bool
scan_command_fields(const uint8 *p, size_t len, char **name, int *completion_id)
{
	const uint8 *end = p + len;

	*name = NULL;
	*completion_id = 0;
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
				if (field == 11)
					*completion_id = (int) v;
				break;
			case 1:				/* 64-bit */
				if (end - p < 8)
					return false;
				p += 8;
				break;
			case 2:				/* length-delimited */
				if (!read_varint(&p, end, &v) || v > (uint64) (end - p))
					return false;
				if (field == 12)
					*name = utf8_make_valid((const char *) p, (size_t) v);
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

#define DECODE(type_, fn_, body_, len_) \
	((type_ *) decode_or_error((ProtobufCMessage *) fn_(&protocol_allocator, (len_), (body_)), msg_type))

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

/* Encodes a notification and journals it. */
static void
append_notification(Attempt *a, uint16 type, Wire__NotificationMessage *n)
{
	size_t		len = protobuf_c_message_get_packed_size(&n->base);
	uint8	   *buf = palloc(Max(len, 1));
	int			completion_id = 0;
	int			signal_id = 0;
	char	   *signal_name = NULL;

	protobuf_c_message_pack(&n->base, buf);
	if (n->id_case == WIRE__NOTIFICATION_MESSAGE__ID_COMPLETION_ID)
		completion_id = n->completion_id;
	else if (n->id_case == WIRE__NOTIFICATION_MESSAGE__ID_SIGNAL_ID)
		signal_id = n->signal_id;
	else if (n->id_case == WIRE__NOTIFICATION_MESSAGE__ID_SIGNAL_NAME)
		signal_name = n->signal_name;
	store_append_entry(a->invocation_id, type, NULL, completion_id, signal_id,
					   signal_name, buf, len);
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

static AttemptOutcome
fail(Attempt *a, int code, int64 retry_delay_ms, const char *fmt,...)
	pg_attribute_printf(4, 5);

static AttemptOutcome
fail(Attempt *a, int code, int64 retry_delay_ms, const char *fmt,...)
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
	/* Messages quote the service; keep them valid text. */
	store_attempt_failed(a->invocation_id, code,
						 utf8_make_valid(msg.data, msg.len), retry_delay_ms, false);
	return ATTEMPT_FAILED;
}

/* Why a transfer ended without a terminal message. */
static AttemptOutcome
fail_transport(Attempt *a)
{
	HttpTransfer *t = &a->transfer;
	FrameReader *r = &a->reader;

	if (r->refusal == FRAME_READER_OVER_BUDGET ||
		r->refusal == FRAME_READER_OUT_OF_MEMORY)
		return fail(a, 503, -1, "%s", frame_reader_refusal_message(r));
	if (r->refusal != FRAME_READER_OK)
		return fail(a, 413, -1, "%s", frame_reader_refusal_message(r));
	if (t->result == CURLE_OPERATION_TIMEDOUT)
		return fail(a, 504, -1, "attempt timed out: %s",
					t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result));
	if (t->result != CURLE_OK)
		return fail(a, 503, -1, "could not reach service at %s: %s", a->url,
					t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result));
	if (r->len > r->complete_offset)
		return fail(a, 571, -1,
					"service stream ended in the middle of a message (%zu bytes left over)",
					r->len - r->complete_offset);
	return fail(a, 571, -1, "service stream ended without End, Suspension or Error");
}

/*
 * Applies one message.  Returns true when the message ended the attempt
 * (outcome set), false to go on with the next one.
 */
static bool
apply_message(Attempt *a, uint16 msg_type, const uint8 *body, uint32 len,
			  AttemptOutcome *outcome)
{
	char	   *name;
	int			completion_id;

	if (MSG_IS_COMMAND(msg_type))
	{
		if (!scan_command_fields(body, len, &name, &completion_id))
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("service sent a malformed %s command",
							protocol_message_name(msg_type))));

		switch (msg_type)
		{
			case MSG_OUTPUT_COMMAND:
				{
					Wire__OutputCommandMessage *m =
						DECODE(Wire__OutputCommandMessage,
							   wire__output_command_message__unpack, body, len);

					if (m->result_case == WIRE__OUTPUT_COMMAND_MESSAGE__RESULT_FAILURE &&
						m->failure != NULL)
					{
						a->output_failed = true;
						a->output_failure_code = m->failure->code;
						a->output_failure_message = m->failure->message
							? utf8_make_valid(m->failure->message, strlen(m->failure->message))
							: pstrdup("");
					}
					else if (m->result_case == WIRE__OUTPUT_COMMAND_MESSAGE__RESULT_VALUE &&
							 m->value != NULL)
					{
						a->output = palloc(Max(m->value->content.len, 1));
						memcpy(a->output, m->value->content.data, m->value->content.len);
						a->output_len = m->value->content.len;
					}
					break;
				}
			case MSG_SET_STATE_COMMAND:
				{
					Wire__SetStateCommandMessage *m =
						DECODE(Wire__SetStateCommandMessage,
							   wire__set_state_command_message__unpack, body, len);

					store_set_state(a, m->key.data, m->key.len,
									m->value ? m->value->content.data : NULL,
									m->value ? m->value->content.len : 0);
					break;
				}
			case MSG_CLEAR_STATE_COMMAND:
				{
					Wire__ClearStateCommandMessage *m =
						DECODE(Wire__ClearStateCommandMessage,
							   wire__clear_state_command_message__unpack, body, len);

					store_clear_state(a, m->key.data, m->key.len);
					break;
				}
			case MSG_CLEAR_ALL_STATE_COMMAND:
				store_clear_all_state(a);
				break;
			case MSG_GET_EAGER_STATE_COMMAND:
			case MSG_GET_EAGER_STATE_KEYS_COMMAND:
			case MSG_RUN_COMMAND:
				break;
			case MSG_GET_LAZY_STATE_COMMAND:
			case MSG_GET_LAZY_STATE_KEYS_COMMAND:
			case MSG_SLEEP_COMMAND:
				/* handled after the command is journaled, below */
				break;
			default:
				if (!MSG_IS_CUSTOM(msg_type))
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("the %s command (0x%04X) is not supported by durable yet",
									protocol_message_name(msg_type), msg_type)));
				break;
		}

		store_append_entry(a->invocation_id, msg_type, name, completion_id, 0, NULL,
							body, len);

		/* Commands the runtime answers right away. */
		if (msg_type == MSG_GET_LAZY_STATE_COMMAND)
		{
			Wire__GetLazyStateCommandMessage *m =
				DECODE(Wire__GetLazyStateCommandMessage,
					   wire__get_lazy_state_command_message__unpack, body, len);
			Wire__NotificationMessage n = WIRE__NOTIFICATION_MESSAGE__INIT;
			Wire__Void v = WIRE__VOID__INIT;
			Wire__Value value = WIRE__VALUE__INIT;
			StringInfoData buf;

			initStringInfo(&buf);
			n.id_case = WIRE__NOTIFICATION_MESSAGE__ID_COMPLETION_ID;
			n.completion_id = m->result_completion_id;
			if (store_get_state(a, m->key.data, m->key.len, &buf))
			{
				value.content.data = (uint8 *) buf.data;
				value.content.len = buf.len;
				n.result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_VALUE;
				n.value = &value;
			}
			else
			{
				n.result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_VOID;
				n.void_ = &v;
			}
			append_notification(a, MSG_GET_LAZY_STATE_COMPLETION, &n);
		}
		else if (msg_type == MSG_GET_LAZY_STATE_KEYS_COMMAND)
		{
			Wire__NotificationMessage n = WIRE__NOTIFICATION_MESSAGE__INIT;
			Wire__StateKeys keys = WIRE__STATE_KEYS__INIT;
			List	   *names = store_state_keys(a);
			ListCell   *lc;
			int			i = 0;

			keys.n_keys = list_length(names);
			keys.keys = palloc(sizeof(ProtobufCBinaryData) * Max(keys.n_keys, 1));
			foreach(lc, names)
			{
				keys.keys[i].data = (uint8 *) lfirst(lc);
				keys.keys[i].len = strlen(lfirst(lc));
				i++;
			}
			n.id_case = WIRE__NOTIFICATION_MESSAGE__ID_COMPLETION_ID;
			n.completion_id = completion_id;
			n.result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_STATE_KEYS;
			n.state_keys = &keys;
			append_notification(a, MSG_GET_LAZY_STATE_KEYS_COMPLETION, &n);
		}
		else if (msg_type == MSG_SLEEP_COMMAND)
		{
			Wire__SleepCommandMessage *m =
				DECODE(Wire__SleepCommandMessage,
					   wire__sleep_command_message__unpack, body, len);
			TimestampTz wake_at;

			/* Unix epoch milliseconds to PostgreSQL's 2000-based microseconds. */
			wake_at = (TimestampTz) m->wake_up_time * 1000 -
				(TimestampTz) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
			store_add_timer(a->invocation_id, m->result_completion_id, wake_at);
		}
		return false;
	}

	switch (msg_type)
	{
		case MSG_PROPOSE_RUN_COMPLETION:
			{
				Wire__ProposeRunCompletionMessage *m =
					DECODE(Wire__ProposeRunCompletionMessage,
						   wire__propose_run_completion_message__unpack, body, len);
				Wire__NotificationMessage n = WIRE__NOTIFICATION_MESSAGE__INIT;
				Wire__Value value = WIRE__VALUE__INIT;

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
					ereport(ERROR,
							(errcode(ERRCODE_PROTOCOL_VIOLATION),
							 errmsg("service proposed a run completion without a result")));
				append_notification(a, MSG_RUN_COMPLETION, &n);
				return false;
			}
		case MSG_SUSPENSION:
			{
				Wire__SuspensionMessage *m =
					DECODE(Wire__SuspensionMessage,
						   wire__suspension_message__unpack, body, len);

				if (m->n_waiting_completions + m->n_waiting_signals +
					m->n_waiting_named_signals == 0)
					ereport(ERROR,
							(errcode(ERRCODE_PROTOCOL_VIOLATION),
							 errmsg("service suspended without waiting for anything")));
				*outcome = store_suspend(a->invocation_id,
										 (int) m->n_waiting_completions, m->waiting_completions,
										 (int) m->n_waiting_signals, m->waiting_signals,
										 (int) m->n_waiting_named_signals, m->waiting_named_signals)
					? ATTEMPT_RESUMABLE : ATTEMPT_SUSPENDED;
				return true;
			}
		case MSG_ERROR:
			{
				Wire__ErrorMessage *m =
					DECODE(Wire__ErrorMessage, wire__error_message__unpack, body, len);
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
				*outcome = fail(a, (int) m->code, delay, "%s%s",
								m->message ? m->message : "", related.data);
				return true;
			}
		case MSG_END:
			if (a->output_failed)
				store_complete(a->invocation_id, NULL, 0, true,
							   (int) a->output_failure_code, a->output_failure_message);
			else
				store_complete(a->invocation_id, a->output, a->output_len, false, 0, NULL);
			*outcome = ATTEMPT_COMPLETED;
			return true;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("service sent unexpected message type 0x%04X (%s)",
							msg_type, protocol_message_name(msg_type))));
	}
	return false;				/* keep compiler quiet */
}

AttemptOutcome
attempt_apply_response(Attempt *a)
{
	HttpTransfer *t = &a->transfer;
	FrameReader *r = &a->reader;
	AttemptOutcome outcome = ATTEMPT_FAILED;
	size_t		offset = 0;

	if (a->uri == NULL)
		return fail(a, 404, -1, "service \"%s\" is no longer registered", a->service_name);
	Assert(a->started && t->finished);
	Assert(r->complete_offset <= r->len);

	if (!t->status_ok)
	{
		if (t->status == 0)
			return fail_transport(a);
		return fail(a, (int) t->status, -1, "service answered HTTP %ld: %s", t->status,
					printable(t->error_body.data, t->error_body.len));
	}

	/* A response in another format cannot be trusted to mean anything. */
	{
		char	   *ct = NULL;

		curl_easy_getinfo(t->easy, CURLINFO_CONTENT_TYPE, &ct);
		if (ct == NULL || pg_strncasecmp(ct, a->expected_content_type,
										 strlen(a->expected_content_type)) != 0)
			return fail(a, 571, -1, "service answered with content-type \"%s\", expected \"%s\"",
						ct ? printable(ct, strlen(ct)) : "", a->expected_content_type);
	}

	while (offset < r->complete_offset)
	{
		uint16		type;
		uint16		flags;
		uint32		len;
		const uint8 *frame = (const uint8 *) r->data + offset;

		frame_header_read(frame, &type, &flags, &len);
		offset += PROTOCOL_FRAME_HEADER_SIZE + len;
		if (apply_message(a, type, frame + PROTOCOL_FRAME_HEADER_SIZE, len, &outcome))
			return outcome;
	}

	/* Complete messages were applied; the stream still broke. */
	return fail_transport(a);
}
