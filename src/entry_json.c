/*-------------------------------------------------------------------------
 *
 * entry_json.c
 *	  Describe protocol messages as JSON, for users and for logs.
 *
 * Journal entries are stored as the exact bytes the SDK sent (replay needs
 * them verbatim), which makes them opaque in SQL.  This file decodes them
 * with the generated protobuf-c code and renders one JSON object per entry,
 * with field names close to the protocol's.  Commands whose only id is
 * result_completion_id show it as "completion_id", the same member name
 * their completion notification uses, so the two are easy to match up; Call
 * has two ids and names both.
 *
 * Bodies come from services we do not control and may be garbage.  Nothing
 * here may raise an error because of their content, so every decision is
 * made conservatively: payloads are embedded as JSON only after the same
 * checks that jsonb_in would apply, text only when it is valid in the
 * database encoding, and everything else is base64.
 *
 * IDENTIFICATION
 *	  src/entry_json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <protobuf-c/protobuf-c.h>

#include "common/base64.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "entry_json.h"
#include "invocation_id.h"
#include "protocol.h"
#include "protocol.pb-c.h"
#include "utf8.h"

PG_FUNCTION_INFO_V1(durable_decode_entry);

/*
 * Limits on payloads we embed as JSON.  The backend JSON parser recurses
 * once per nesting level and raises an error when the stack runs short, and
 * jsonb_in hands numbers to numeric_in, which rejects some that the JSON
 * grammar allows.  Payloads beyond these limits are shown as strings.
 */
#define JSON_MAX_NESTING		1000
#define JSON_MAX_NUMBER_LENGTH	1000
#define JSON_MAX_EXPONENT		1000

/*
 * Bodies and payloads larger than this are summarised by their length.
 * escape_json can turn one byte into six ("\u001f"), so anything up to this
 * size still renders within the 1 GB limit of a StringInfo.  Real messages
 * are far smaller (PROTOCOL_MAX_MESSAGE_SIZE); this only keeps the "never
 * raise an error" promise for absurd input.
 */
#define RENDER_MAX_BYTES		(MaxAllocSize / 8)

/* An object being written: remembers whether a comma is due. */
typedef struct JsonObject
{
	StringInfo	buf;
	bool		empty;
} JsonObject;

/* State for the semantic action that vets numbers while parsing. */
typedef struct PayloadCheck
{
	bool		numbers_ok;
} PayloadCheck;

static bool describe_entry(JsonObject *obj, uint16 type,
						   const uint8 *body, size_t len);


/* ----------------------------------------------------------------
 *		Classifying byte strings
 * ----------------------------------------------------------------
 */

/*
 * Can these bytes go into our output as characters?  In a UTF-8 database
 * they must be valid UTF-8; otherwise we accept only ASCII, since service
 * payloads are UTF-8 and would turn into mojibake.  Embedded NULs fail the
 * check too, which matters because escape_json stops at the first one.
 */
static bool
bytes_are_text(const char *data, size_t len)
{
	size_t		i;

	if (len > PG_INT32_MAX)
		return false;
	if (GetDatabaseEncoding() == PG_UTF8)
		return pg_encoding_verifymbstr(PG_UTF8, data, (int) len) == (int) len;

	for (i = 0; i < len; i++)
	{
		if (data[i] == '\0' || IS_HIGHBIT_SET(data[i]))
			return false;
	}
	return true;
}

/*
 * Do brackets outside of strings nest at most JSON_MAX_NESTING deep?  Only
 * a pre-check to keep the recursive parser off deep inputs; whether the
 * text is valid JSON is for the parser to decide.
 */
static bool
json_nesting_ok(const char *data, size_t len)
{
	int			depth = 0;
	bool		in_string = false;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		char		c = data[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			if (++depth > JSON_MAX_NESTING)
				return false;
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return true;
}

/*
 * Would numeric_in accept this JSON number token?  The grammar has already
 * been checked; we only bound its size and exponent, conservatively.
 */
static bool
json_number_ok(const char *token)
{
	const char *p;
	int			exponent = 0;
	int			ndigits = 0;

	if (strlen(token) > JSON_MAX_NUMBER_LENGTH)
		return false;

	p = strpbrk(token, "eE");
	if (p == NULL)
		return true;
	p++;
	if (*p == '+' || *p == '-')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
	{
		/* more than 4 digits (even leading zeros) is out of bounds anyway */
		if (++ndigits > 4)
			return false;
		exponent = exponent * 10 + (*p - '0');
	}
	return exponent <= JSON_MAX_EXPONENT;
}

static void
payload_check_scalar(void *state, char *token, JsonTokenType tokentype)
{
	PayloadCheck *check = (PayloadCheck *) state;

	if (tokentype == JSON_TOKEN_NUMBER && !json_number_ok(token))
		check->numbers_ok = false;
}

/*
 * Is text (already known to be valid text, NUL-terminated) a JSON document
 * that jsonb_in will accept?
 *
 * We parse with escape processing on and in the database encoding because
 * that is what jsonb_in does: it rejects \u0000, lone surrogates and, in a
 * non-UTF-8 database, escapes for characters outside ASCII, all of which a
 * plain syntax check would let through.
 */
static bool
text_is_json(char *text, size_t len)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	PayloadCheck check;

	if (len == 0 || !json_nesting_ok(text, len))
		return false;

	check.numbers_ok = true;
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &check;
	sem.scalar = payload_check_scalar;

	lex = makeJsonLexContextCstringLen(text, (int) len,
									   GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
		return false;
	return check.numbers_ok;
}


/* ----------------------------------------------------------------
 *		Appending values
 * ----------------------------------------------------------------
 */

static void
append_base64(StringInfo buf, const char *data, size_t len)
{
	int			enclen = pg_b64_enc_len((int) len);
	int			written;

	appendStringInfoString(buf, "{\"base64\":\"");
	enlargeStringInfo(buf, enclen + 1);
	written = pg_b64_encode(data, (int) len, buf->data + buf->len, enclen);
	if (written > 0)
		buf->len += written;
	buf->data[buf->len] = '\0';
	appendStringInfoString(buf, "\"}");
}

/* Append a JSON string from text known to be valid; copes with no NUL. */
static void
append_escaped(StringInfo buf, const char *data, size_t len)
{
	char	   *copy = palloc(len + 1);

	memcpy(copy, data, len);
	copy[len] = '\0';
	escape_json(buf, copy);
	pfree(copy);
}

void
json_append_text(StringInfo buf, const char *data, size_t len)
{
	/* empty protobuf bytes may come with a NULL pointer */
	if (len == 0)
		data = "";

	if (len > RENDER_MAX_BYTES)
		appendStringInfo(buf, "{\"length\":%zu}", len);
	else if (bytes_are_text(data, len))
		append_escaped(buf, data, len);
	else
		append_base64(buf, data, len);
}

void
json_append_payload(StringInfo buf, const char *data, size_t len)
{
	char	   *copy;

	/* empty protobuf bytes may come with a NULL pointer */
	if (len == 0)
		data = "";

	if (len > RENDER_MAX_BYTES)
	{
		appendStringInfo(buf, "{\"length\":%zu}", len);
		return;
	}
	if (!bytes_are_text(data, len))
	{
		append_base64(buf, data, len);
		return;
	}

	/* the JSON lexer and escape_json both want a terminated copy */
	copy = palloc(len + 1);
	memcpy(copy, data, len);
	copy[len] = '\0';

	if (text_is_json(copy, len))
		appendBinaryStringInfo(buf, copy, (int) len);
	else
		escape_json(buf, copy);
	pfree(copy);
}


/* ----------------------------------------------------------------
 *		Building objects
 * ----------------------------------------------------------------
 */

static void
obj_begin(JsonObject *obj, StringInfo buf)
{
	obj->buf = buf;
	obj->empty = true;
	appendStringInfoChar(buf, '{');
}

static void
obj_end(JsonObject *obj)
{
	appendStringInfoChar(obj->buf, '}');
}

/* Start a member; the caller appends its value. */
static void
obj_key(JsonObject *obj, const char *key)
{
	if (!obj->empty)
		appendStringInfoChar(obj->buf, ',');
	obj->empty = false;
	escape_json(obj->buf, key);
	appendStringInfoChar(obj->buf, ':');
}

static void
obj_uint(JsonObject *obj, const char *key, uint64 value)
{
	obj_key(obj, key);
	appendStringInfo(obj->buf, UINT64_FORMAT, value);
}

static void
obj_bool(JsonObject *obj, const char *key, bool value)
{
	obj_key(obj, key);
	appendStringInfoString(obj->buf, value ? "true" : "false");
}

/*
 * A protobuf string (a name, a message).  protobuf-c does not check UTF-8;
 * in a UTF-8 database invalid bytes become U+FFFD, so the text stays
 * readable (and the jsonb dumpable).  Elsewhere the same text check as for
 * any other bytes applies.
 */
static void
obj_string(JsonObject *obj, const char *key, const char *value)
{
	size_t		len;

	obj_key(obj, key);
	if (value == NULL)
	{
		appendStringInfoString(obj->buf, "null");
		return;
	}
	len = strlen(value);
	if (GetDatabaseEncoding() == PG_UTF8 && len <= RENDER_MAX_BYTES &&
		!utf8_is_valid(value, len))
	{
		char	   *valid = utf8_make_valid(value, len);

		escape_json(obj->buf, valid);
		pfree(valid);
	}
	else
		json_append_text(obj->buf, value, len);
}

/*
 * A proto3 string where empty means absent (entry names, object keys):
 * leave it out rather than clutter every entry with "name":"".
 */
static void
obj_string_nonempty(JsonObject *obj, const char *key, const char *value)
{
	if (value != NULL && value[0] != '\0')
		obj_string(obj, key, value);
}

static void
obj_text_bytes(JsonObject *obj, const char *key, ProtobufCBinaryData data)
{
	obj_key(obj, key);
	json_append_text(obj->buf, (const char *) data.data, data.len);
}

static void
obj_payload(JsonObject *obj, const char *key, const uint8 *data, size_t len)
{
	obj_key(obj, key);
	json_append_payload(obj->buf, (const char *) data, len);
}

/* A Value sub-message; a missing one reads as empty content, as in proto3. */
static void
obj_value(JsonObject *obj, const char *key, const Wire__Value *value)
{
	if (value == NULL)
		obj_payload(obj, key, NULL, 0);
	else
		obj_payload(obj, key, value->content.data, value->content.len);
}

/* Void results are shown as "void":true, distinct from a JSON null value. */
static void
obj_void(JsonObject *obj)
{
	obj_bool(obj, "void", true);
}

static void
obj_failure(JsonObject *obj, const char *key, const Wire__Failure *failure)
{
	JsonObject	inner;

	obj_key(obj, key);
	obj_begin(&inner, obj->buf);
	if (failure != NULL)
	{
		obj_uint(&inner, "code", failure->code);
		obj_string(&inner, "message", failure->message);
		if (failure->n_metadata > 0)
		{
			JsonObject	meta;
			size_t		i;

			obj_key(&inner, "metadata");
			obj_begin(&meta, obj->buf);
			for (i = 0; i < failure->n_metadata; i++)
			{
				const Wire__FailureMetadata *m = failure->metadata[i];

				/* a key that is not text cannot be a JSON member name */
				if (m->key == NULL || !bytes_are_text(m->key, strlen(m->key)))
					continue;
				obj_string(&meta, m->key, m->value);
			}
			obj_end(&meta);
		}
	}
	obj_end(&inner);
}

/*
 * Headers as an object.  Repeated names (legal in HTTP) collapse to the
 * last one once this goes through jsonb; good enough for inspection.
 */
static void
obj_headers(JsonObject *obj, const char *key,
			size_t n_headers, Wire__Header **headers)
{
	JsonObject	inner;
	size_t		i;

	obj_key(obj, key);
	obj_begin(&inner, obj->buf);
	for (i = 0; i < n_headers; i++)
	{
		const Wire__Header *h = headers[i];

		if (h->key == NULL || !bytes_are_text(h->key, strlen(h->key)))
			continue;
		obj_string(&inner, h->key, h->value);
	}
	obj_end(&inner);
}

static void
obj_state_keys(JsonObject *obj, const char *key, const Wire__StateKeys *keys)
{
	size_t		i;

	obj_key(obj, key);
	appendStringInfoChar(obj->buf, '[');
	if (keys != NULL)
	{
		for (i = 0; i < keys->n_keys; i++)
		{
			if (i > 0)
				appendStringInfoChar(obj->buf, ',');
			json_append_text(obj->buf, (const char *) keys->keys[i].data,
							 keys->keys[i].len);
		}
	}
	appendStringInfoChar(obj->buf, ']');
}

static void
obj_uint_array(JsonObject *obj, const char *key, size_t n, const uint32 *values)
{
	size_t		i;

	obj_key(obj, key);
	appendStringInfoChar(obj->buf, '[');
	for (i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(obj->buf, ',');
		appendStringInfo(obj->buf, "%u", values[i]);
	}
	appendStringInfoChar(obj->buf, ']');
}

static void
obj_string_array(JsonObject *obj, const char *key, size_t n, char **values)
{
	size_t		i;

	obj_key(obj, key);
	appendStringInfoChar(obj->buf, '[');
	for (i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(obj->buf, ',');
		json_append_text(obj->buf, values[i], strlen(values[i]));
	}
	appendStringInfoChar(obj->buf, ']');
}

/* The target of AttachInvocation / GetInvocationOutput. */
static void
obj_target(JsonObject *obj, const char *invocation_id,
		   const Wire__IdempotentRequestTarget *idem,
		   const Wire__WorkflowTarget *workflow)
{
	JsonObject	inner;

	if (invocation_id != NULL)
		obj_string(obj, "invocation_id", invocation_id);
	else if (idem != NULL)
	{
		obj_key(obj, "idempotent_request_target");
		obj_begin(&inner, obj->buf);
		obj_string(&inner, "service", idem->service_name);
		if (idem->opt_service_key_case ==
			WIRE__IDEMPOTENT_REQUEST_TARGET__OPT_SERVICE_KEY_SERVICE_KEY)
			obj_string(&inner, "key", idem->service_key);
		obj_string(&inner, "handler", idem->handler_name);
		obj_string(&inner, "idempotency_key", idem->idempotency_key);
		obj_end(&inner);
	}
	else if (workflow != NULL)
	{
		obj_key(obj, "workflow_target");
		obj_begin(&inner, obj->buf);
		obj_string(&inner, "workflow", workflow->workflow_name);
		obj_string(&inner, "key", workflow->workflow_key);
		obj_end(&inner);
	}
}


/* ----------------------------------------------------------------
 *		Per-message decoders
 *
 * Each returns false when the body does not unpack.  Unpacked messages
 * live in journal_entry_to_json's private memory context (protocol_allocator
 * uses palloc), so none is freed here.
 * ----------------------------------------------------------------
 */

static bool
describe_start(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__StartMessage *m;
	JsonObject	state;
	size_t		i;

	m = wire__start_message__unpack(&protocol_allocator, len, body);
	if (m == NULL)
		return false;

	obj_key(obj, "id");
	if (m->id.len == INVOCATION_ID_RAW_LEN)
	{
		char		text[INVOCATION_ID_TEXT_LEN + 1];

		invocation_id_format_into(m->id.data, text);
		escape_json(obj->buf, text);
	}
	else
		json_append_text(obj->buf, (const char *) m->id.data, m->id.len);

	obj_string(obj, "debug_id", m->debug_id);
	obj_uint(obj, "known_entries", m->known_entries);
	/* eager state as an object; a key that is not text cannot be a name */
	obj_key(obj, "state");
	obj_begin(&state, obj->buf);
	for (i = 0; i < m->n_state_map; i++)
	{
		const Wire__StartMessage__StateEntry *e = m->state_map[i];
		char	   *key;

		if (e->key.len == 0)
			key = "";			/* data may be NULL then */
		else if (bytes_are_text((const char *) e->key.data, e->key.len))
			key = pnstrdup((const char *) e->key.data, e->key.len);
		else
			continue;
		obj_payload(&state, key, e->value.data, e->value.len);
	}
	obj_end(&state);
	obj_bool(obj, "partial_state", m->partial_state);
	obj_string_nonempty(obj, "key", m->key);
	obj_uint(obj, "retry_count_since_last_stored_entry",
			 m->retry_count_since_last_stored_entry);
	obj_uint(obj, "duration_since_last_stored_entry",
			 m->duration_since_last_stored_entry);
	obj_uint(obj, "random_seed", m->random_seed);
	return true;
}

static bool
describe_suspension(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__SuspensionMessage *m;

	m = wire__suspension_message__unpack(&protocol_allocator, len, body);
	if (m == NULL)
		return false;
	obj_uint_array(obj, "waiting_completions",
				   m->n_waiting_completions, m->waiting_completions);
	obj_uint_array(obj, "waiting_signals",
				   m->n_waiting_signals, m->waiting_signals);
	obj_string_array(obj, "waiting_named_signals",
					 m->n_waiting_named_signals, m->waiting_named_signals);
	return true;
}

static bool
describe_error(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__ErrorMessage *m;

	m = wire__error_message__unpack(&protocol_allocator, len, body);
	if (m == NULL)
		return false;
	obj_uint(obj, "code", m->code);
	obj_string(obj, "message", m->message);
	obj_string_nonempty(obj, "stacktrace", m->stacktrace);
	if (m->opt_related_command_index_case ==
		WIRE__ERROR_MESSAGE__OPT_RELATED_COMMAND_INDEX_RELATED_COMMAND_INDEX)
		obj_uint(obj, "related_command_index", m->related_command_index);
	if (m->opt_related_command_name_case ==
		WIRE__ERROR_MESSAGE__OPT_RELATED_COMMAND_NAME_RELATED_COMMAND_NAME)
		obj_string(obj, "related_command_name", m->related_command_name);
	if (m->opt_related_command_type_case ==
		WIRE__ERROR_MESSAGE__OPT_RELATED_COMMAND_TYPE_RELATED_COMMAND_TYPE)
	{
		obj_uint(obj, "related_command_type", m->related_command_type);
		if (m->related_command_type <= PG_UINT16_MAX)
			obj_string(obj, "related_command_type_name",
					   protocol_message_name((uint16) m->related_command_type));
	}
	if (m->opt_next_retry_delay_case ==
		WIRE__ERROR_MESSAGE__OPT_NEXT_RETRY_DELAY_NEXT_RETRY_DELAY)
		obj_uint(obj, "next_retry_delay", m->next_retry_delay);
	return true;
}

static bool
describe_end(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__EndMessage *m;

	m = wire__end_message__unpack(&protocol_allocator, len, body);
	return m != NULL;
}

static bool
describe_propose_run_completion(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__ProposeRunCompletionMessage *m;

	m = wire__propose_run_completion_message__unpack(&protocol_allocator,
													 len, body);
	if (m == NULL)
		return false;
	obj_uint(obj, "completion_id", m->result_completion_id);
	if (m->result_case == WIRE__PROPOSE_RUN_COMPLETION_MESSAGE__RESULT_VALUE)
		obj_payload(obj, "value", m->value.data, m->value.len);
	else if (m->result_case == WIRE__PROPOSE_RUN_COMPLETION_MESSAGE__RESULT_FAILURE)
		obj_failure(obj, "failure", m->failure);
	return true;
}

/* Every notification type shares one layout; see protocol.proto. */
static bool
describe_notification(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__NotificationMessage *m;

	m = wire__notification_message__unpack(&protocol_allocator, len, body);
	if (m == NULL)
		return false;

	switch (m->id_case)
	{
		case WIRE__NOTIFICATION_MESSAGE__ID_COMPLETION_ID:
			obj_uint(obj, "completion_id", m->completion_id);
			break;
		case WIRE__NOTIFICATION_MESSAGE__ID_SIGNAL_ID:
			obj_uint(obj, "signal_id", m->signal_id);
			break;
		case WIRE__NOTIFICATION_MESSAGE__ID_SIGNAL_NAME:
			obj_string(obj, "signal_name", m->signal_name);
			break;
		default:
			break;
	}

	switch (m->result_case)
	{
		case WIRE__NOTIFICATION_MESSAGE__RESULT_VOID:
			obj_void(obj);
			break;
		case WIRE__NOTIFICATION_MESSAGE__RESULT_VALUE:
			obj_value(obj, "value", m->value);
			break;
		case WIRE__NOTIFICATION_MESSAGE__RESULT_FAILURE:
			obj_failure(obj, "failure", m->failure);
			break;
		case WIRE__NOTIFICATION_MESSAGE__RESULT_INVOCATION_ID:
			obj_string(obj, "invocation_id", m->invocation_id);
			break;
		case WIRE__NOTIFICATION_MESSAGE__RESULT_STATE_KEYS:
			obj_state_keys(obj, "keys", m->state_keys);
			break;
		default:
			break;
	}
	return true;
}

static bool
describe_input(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__InputCommandMessage *m;

	m = wire__input_command_message__unpack(&protocol_allocator, len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_headers(obj, "headers", m->n_headers, m->headers);
	obj_value(obj, "value", m->value);
	return true;
}

static bool
describe_output(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__OutputCommandMessage *m;

	m = wire__output_command_message__unpack(&protocol_allocator, len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	if (m->result_case == WIRE__OUTPUT_COMMAND_MESSAGE__RESULT_VALUE)
		obj_value(obj, "value", m->value);
	else if (m->result_case == WIRE__OUTPUT_COMMAND_MESSAGE__RESULT_FAILURE)
		obj_failure(obj, "failure", m->failure);
	return true;
}

static bool
describe_get_lazy_state(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__GetLazyStateCommandMessage *m;

	m = wire__get_lazy_state_command_message__unpack(&protocol_allocator,
													 len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_text_bytes(obj, "key", m->key);
	obj_uint(obj, "completion_id", m->result_completion_id);
	return true;
}

static bool
describe_set_state(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__SetStateCommandMessage *m;

	m = wire__set_state_command_message__unpack(&protocol_allocator,
												len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_text_bytes(obj, "key", m->key);
	obj_value(obj, "value", m->value);
	return true;
}

static bool
describe_clear_state(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__ClearStateCommandMessage *m;

	m = wire__clear_state_command_message__unpack(&protocol_allocator,
												  len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_text_bytes(obj, "key", m->key);
	return true;
}

static bool
describe_clear_all_state(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__ClearAllStateCommandMessage *m;

	m = wire__clear_all_state_command_message__unpack(&protocol_allocator,
													  len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	return true;
}

static bool
describe_get_lazy_state_keys(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__GetLazyStateKeysCommandMessage *m;

	m = wire__get_lazy_state_keys_command_message__unpack(&protocol_allocator,
														  len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_uint(obj, "completion_id", m->result_completion_id);
	return true;
}

static bool
describe_get_eager_state(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__GetEagerStateCommandMessage *m;

	m = wire__get_eager_state_command_message__unpack(&protocol_allocator,
													  len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_text_bytes(obj, "key", m->key);
	if (m->result_case == WIRE__GET_EAGER_STATE_COMMAND_MESSAGE__RESULT_VOID)
		obj_void(obj);
	else if (m->result_case == WIRE__GET_EAGER_STATE_COMMAND_MESSAGE__RESULT_VALUE)
		obj_value(obj, "value", m->value);
	return true;
}

static bool
describe_get_eager_state_keys(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__GetEagerStateKeysCommandMessage *m;

	m = wire__get_eager_state_keys_command_message__unpack(&protocol_allocator,
														   len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_state_keys(obj, "keys", m->value);
	return true;
}

/* GetPromise and PeekPromise have the same layout. */
static bool
describe_promise_read(JsonObject *obj, uint16 type,
					  const uint8 *body, size_t len)
{
	const char *name;
	const char *key;
	uint32		completion_id;

	if (type == MSG_GET_PROMISE_COMMAND)
	{
		Wire__GetPromiseCommandMessage *m;

	m = wire__get_promise_command_message__unpack(&protocol_allocator,
												  len, body);
		if (m == NULL)
			return false;
		name = m->name;
		key = m->key;
		completion_id = m->result_completion_id;
	}
	else
	{
		Wire__PeekPromiseCommandMessage *m;

	m = wire__peek_promise_command_message__unpack(&protocol_allocator,
												   len, body);
		if (m == NULL)
			return false;
		name = m->name;
		key = m->key;
		completion_id = m->result_completion_id;
	}
	obj_string_nonempty(obj, "name", name);
	obj_string(obj, "key", key);
	obj_uint(obj, "completion_id", completion_id);
	return true;
}

static bool
describe_complete_promise(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__CompletePromiseCommandMessage *m;

	m = wire__complete_promise_command_message__unpack(&protocol_allocator,
													   len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_string(obj, "key", m->key);
	if (m->completion_case ==
		WIRE__COMPLETE_PROMISE_COMMAND_MESSAGE__COMPLETION_COMPLETION_VALUE)
		obj_value(obj, "value", m->completion_value);
	else if (m->completion_case ==
			 WIRE__COMPLETE_PROMISE_COMMAND_MESSAGE__COMPLETION_COMPLETION_FAILURE)
		obj_failure(obj, "failure", m->completion_failure);
	obj_uint(obj, "completion_id", m->result_completion_id);
	return true;
}

static bool
describe_sleep(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__SleepCommandMessage *m;

	m = wire__sleep_command_message__unpack(&protocol_allocator, len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_uint(obj, "wake_up_time", m->wake_up_time);
	obj_uint(obj, "completion_id", m->result_completion_id);
	return true;
}

static bool
describe_call(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__CallCommandMessage *m;

	m = wire__call_command_message__unpack(&protocol_allocator, len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_string(obj, "service", m->service_name);
	obj_string(obj, "handler", m->handler_name);
	obj_string_nonempty(obj, "key", m->key);
	if (m->opt_idempotency_key_case ==
		WIRE__CALL_COMMAND_MESSAGE__OPT_IDEMPOTENCY_KEY_IDEMPOTENCY_KEY)
		obj_string(obj, "idempotency_key", m->idempotency_key);
	if (m->n_headers > 0)
		obj_headers(obj, "headers", m->n_headers, m->headers);
	obj_payload(obj, "parameter", m->parameter.data, m->parameter.len);
	obj_uint(obj, "invocation_id_notification_idx",
			 m->invocation_id_notification_idx);
	obj_uint(obj, "result_completion_id", m->result_completion_id);
	return true;
}

static bool
describe_one_way_call(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__OneWayCallCommandMessage *m;

	m = wire__one_way_call_command_message__unpack(&protocol_allocator,
												   len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_string(obj, "service", m->service_name);
	obj_string(obj, "handler", m->handler_name);
	obj_string_nonempty(obj, "key", m->key);
	if (m->opt_idempotency_key_case ==
		WIRE__ONE_WAY_CALL_COMMAND_MESSAGE__OPT_IDEMPOTENCY_KEY_IDEMPOTENCY_KEY)
		obj_string(obj, "idempotency_key", m->idempotency_key);
	if (m->n_headers > 0)
		obj_headers(obj, "headers", m->n_headers, m->headers);
	obj_payload(obj, "parameter", m->parameter.data, m->parameter.len);
	if (m->invoke_time != 0)
		obj_uint(obj, "invoke_time", m->invoke_time);
	obj_uint(obj, "invocation_id_notification_idx",
			 m->invocation_id_notification_idx);
	return true;
}

static bool
describe_send_signal(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__SendSignalCommandMessage *m;

	m = wire__send_signal_command_message__unpack(&protocol_allocator,
												  len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->entry_name);
	obj_string(obj, "target_invocation_id", m->target_invocation_id);
	if (m->signal_id_case == WIRE__SEND_SIGNAL_COMMAND_MESSAGE__SIGNAL_ID_IDX)
		obj_uint(obj, "signal_id", m->idx);
	else if (m->signal_id_case == WIRE__SEND_SIGNAL_COMMAND_MESSAGE__SIGNAL_ID_NAME)
		obj_string(obj, "signal_name", m->name);

	if (m->result_case == WIRE__SEND_SIGNAL_COMMAND_MESSAGE__RESULT_VOID)
		obj_void(obj);
	else if (m->result_case == WIRE__SEND_SIGNAL_COMMAND_MESSAGE__RESULT_VALUE)
		obj_value(obj, "value", m->value);
	else if (m->result_case == WIRE__SEND_SIGNAL_COMMAND_MESSAGE__RESULT_FAILURE)
		obj_failure(obj, "failure", m->failure);
	return true;
}

static bool
describe_run(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__RunCommandMessage *m;

	m = wire__run_command_message__unpack(&protocol_allocator, len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_uint(obj, "completion_id", m->result_completion_id);
	return true;
}

static bool
describe_attach_invocation(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__AttachInvocationCommandMessage *m;

	m = wire__attach_invocation_command_message__unpack(&protocol_allocator,
														len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	switch (m->target_case)
	{
		case WIRE__ATTACH_INVOCATION_COMMAND_MESSAGE__TARGET_INVOCATION_ID:
			obj_target(obj, m->invocation_id, NULL, NULL);
			break;
		case WIRE__ATTACH_INVOCATION_COMMAND_MESSAGE__TARGET_IDEMPOTENT_REQUEST_TARGET:
			obj_target(obj, NULL, m->idempotent_request_target, NULL);
			break;
		case WIRE__ATTACH_INVOCATION_COMMAND_MESSAGE__TARGET_WORKFLOW_TARGET:
			obj_target(obj, NULL, NULL, m->workflow_target);
			break;
		default:
			break;
	}
	obj_uint(obj, "completion_id", m->result_completion_id);
	return true;
}

static bool
describe_get_invocation_output(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__GetInvocationOutputCommandMessage *m;

	m = wire__get_invocation_output_command_message__unpack(&protocol_allocator,
								  len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	switch (m->target_case)
	{
		case WIRE__GET_INVOCATION_OUTPUT_COMMAND_MESSAGE__TARGET_INVOCATION_ID:
			obj_target(obj, m->invocation_id, NULL, NULL);
			break;
		case WIRE__GET_INVOCATION_OUTPUT_COMMAND_MESSAGE__TARGET_IDEMPOTENT_REQUEST_TARGET:
			obj_target(obj, NULL, m->idempotent_request_target, NULL);
			break;
		case WIRE__GET_INVOCATION_OUTPUT_COMMAND_MESSAGE__TARGET_WORKFLOW_TARGET:
			obj_target(obj, NULL, NULL, m->workflow_target);
			break;
		default:
			break;
	}
	obj_uint(obj, "completion_id", m->result_completion_id);
	return true;
}

static bool
describe_complete_awakeable(JsonObject *obj, const uint8 *body, size_t len)
{
	Wire__CompleteAwakeableCommandMessage *m;

	m = wire__complete_awakeable_command_message__unpack(&protocol_allocator,
														 len, body);
	if (m == NULL)
		return false;
	obj_string_nonempty(obj, "name", m->name);
	obj_string(obj, "awakeable_id", m->awakeable_id);
	if (m->result_case == WIRE__COMPLETE_AWAKEABLE_COMMAND_MESSAGE__RESULT_VALUE)
		obj_value(obj, "value", m->value);
	else if (m->result_case == WIRE__COMPLETE_AWAKEABLE_COMMAND_MESSAGE__RESULT_FAILURE)
		obj_failure(obj, "failure", m->failure);
	return true;
}

/*
 * Append the members that follow "type".  Returns false if the body does
 * not decode as the message the type announces.
 */
static bool
describe_entry(JsonObject *obj, uint16 type, const uint8 *body, size_t len)
{
	switch (type)
	{
		case MSG_START:
			return describe_start(obj, body, len);
		case MSG_SUSPENSION:
			return describe_suspension(obj, body, len);
		case MSG_ERROR:
			return describe_error(obj, body, len);
		case MSG_END:
			return describe_end(obj, body, len);
		case MSG_PROPOSE_RUN_COMPLETION:
			return describe_propose_run_completion(obj, body, len);

		case MSG_INPUT_COMMAND:
			return describe_input(obj, body, len);
		case MSG_OUTPUT_COMMAND:
			return describe_output(obj, body, len);
		case MSG_GET_LAZY_STATE_COMMAND:
			return describe_get_lazy_state(obj, body, len);
		case MSG_SET_STATE_COMMAND:
			return describe_set_state(obj, body, len);
		case MSG_CLEAR_STATE_COMMAND:
			return describe_clear_state(obj, body, len);
		case MSG_CLEAR_ALL_STATE_COMMAND:
			return describe_clear_all_state(obj, body, len);
		case MSG_GET_LAZY_STATE_KEYS_COMMAND:
			return describe_get_lazy_state_keys(obj, body, len);
		case MSG_GET_EAGER_STATE_COMMAND:
			return describe_get_eager_state(obj, body, len);
		case MSG_GET_EAGER_STATE_KEYS_COMMAND:
			return describe_get_eager_state_keys(obj, body, len);
		case MSG_GET_PROMISE_COMMAND:
		case MSG_PEEK_PROMISE_COMMAND:
			return describe_promise_read(obj, type, body, len);
		case MSG_COMPLETE_PROMISE_COMMAND:
			return describe_complete_promise(obj, body, len);
		case MSG_SLEEP_COMMAND:
			return describe_sleep(obj, body, len);
		case MSG_CALL_COMMAND:
			return describe_call(obj, body, len);
		case MSG_ONE_WAY_CALL_COMMAND:
			return describe_one_way_call(obj, body, len);
		case MSG_SEND_SIGNAL_COMMAND:
			return describe_send_signal(obj, body, len);
		case MSG_RUN_COMMAND:
			return describe_run(obj, body, len);
		case MSG_ATTACH_INVOCATION_COMMAND:
			return describe_attach_invocation(obj, body, len);
		case MSG_GET_INVOCATION_OUTPUT_COMMAND:
			return describe_get_invocation_output(obj, body, len);
		case MSG_COMPLETE_AWAKEABLE_COMMAND:
			return describe_complete_awakeable(obj, body, len);

		case MSG_GET_LAZY_STATE_COMPLETION:
		case MSG_GET_LAZY_STATE_KEYS_COMPLETION:
		case MSG_GET_PROMISE_COMPLETION:
		case MSG_PEEK_PROMISE_COMPLETION:
		case MSG_COMPLETE_PROMISE_COMPLETION:
		case MSG_SLEEP_COMPLETION:
		case MSG_CALL_COMPLETION:
		case MSG_CALL_INVOCATION_ID_COMPLETION:
		case MSG_RUN_COMPLETION:
		case MSG_ATTACH_INVOCATION_COMPLETION:
		case MSG_GET_INVOCATION_OUTPUT_COMPLETION:
		case MSG_SIGNAL_NOTIFICATION:
			return describe_notification(obj, body, len);
	}

	/*
	 * Custom commands are opaque by definition, and for codes we do not know
	 * (including V7 control messages) guessing a layout could mislead.
	 */
	obj_uint(obj, "code", type);
	obj_uint(obj, "length", len);
	return true;
}

char *
journal_entry_to_json(uint16 type, const uint8 *body, size_t len)
{
	MemoryContext workcxt;
	MemoryContext oldcxt;
	StringInfoData buf;
	JsonObject	obj;
	char	   *result;

	/*
	 * Decoding allocates freely (unpacked messages, copies for the JSON
	 * checks); doing it in a private context lets us drop all of that at
	 * once and hand back only the finished string.
	 */
	workcxt = AllocSetContextCreate(CurrentMemoryContext,
									"journal entry JSON",
									ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(workcxt);

	if (body == NULL)
		len = 0;

	initStringInfo(&buf);
	obj_begin(&obj, &buf);
	obj_string(&obj, "type", protocol_message_name(type));
	if (len > RENDER_MAX_BYTES)
	{
		obj_uint(&obj, "length", len);
		obj_string(&obj, "error", "too large to show");
	}
	else if (!describe_entry(&obj, type, body, len))
	{
		/* start over so no half-written member survives */
		resetStringInfo(&buf);
		obj_begin(&obj, &buf);
		obj_string(&obj, "type", protocol_message_name(type));
		obj_string(&obj, "error", "undecodable");
	}
	obj_end(&obj);

	MemoryContextSwitchTo(oldcxt);
	result = palloc(buf.len + 1);
	memcpy(result, buf.data, buf.len + 1);
	MemoryContextDelete(workcxt);

	return result;
}

/*
 * durable_decode_entry(entry_type int4, raw bytea) returns jsonb
 *
 * SQL access to journal_entry_to_json, for looking at stored journals.
 */
Datum
durable_decode_entry(PG_FUNCTION_ARGS)
{
	int32		entry_type = PG_GETARG_INT32(0);
	bytea	   *raw = PG_GETARG_BYTEA_PP(1);
	char	   *json;

	if (entry_type < 0 || entry_type > PG_UINT16_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("message type %d is out of range", entry_type),
				 errdetail("Message types are 16-bit unsigned integers.")));

	json = journal_entry_to_json((uint16) entry_type,
								 (const uint8 *) VARDATA_ANY(raw),
								 VARSIZE_ANY_EXHDR(raw));

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
}
