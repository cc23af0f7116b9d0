/*-------------------------------------------------------------------------
 *
 * protocol.c
 *	  Message type names and the protobuf-c allocator.
 *
 * The names appear in logs, in error messages and in the "type" member of
 * the JSON that durable_decode_entry() produces, so they must stay stable:
 * tests and users match on them.  They are the upstream message names with
 * the "Message", "CommandMessage" or "NotificationMessage" suffix dropped
 * (StartMessage is "Start", RunCommandMessage "Run",
 * RunCompletionNotificationMessage "RunCompletion"), except that
 * CallInvocationIdCompletion is shortened to "CallInvocationId" and
 * SignalNotification to "Signal".
 *
 * It also holds the palloc-based allocator that we hand to protobuf-c.
 *
 * IDENTIFICATION
 *	  src/protocol.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <protobuf-c/protobuf-c.h>

#include "protocol.h"
#include "protocol.pb-c.h"
#include "utf8.h"

static void *protocol_alloc(void *allocator_data, size_t size);
static void protocol_free(void *allocator_data, void *pointer);

struct ProtobufCAllocator protocol_allocator = {
	.alloc = protocol_alloc,
	.free = protocol_free,
	.allocator_data = NULL,
};

/*
 * protocol_message_name
 *		Return a static, human-readable name for a message type code.
 *
 * Never returns NULL: codes we do not know are reported as "Unknown" (or
 * "Custom" for the range reserved for SDK-defined commands), because the
 * caller typically wants to print something about a frame it is about to
 * reject.
 */
const char *
protocol_message_name(uint16 type)
{
	switch (type)
	{
			/* Control messages */
		case MSG_START:
			return "Start";
		case MSG_SUSPENSION:
			return "Suspension";
		case MSG_ERROR:
			return "Error";
		case MSG_END:
			return "End";
		case 0x0004:
			/* V7 only; named so that a stray one is easy to spot in logs */
			return "CommandAck";
		case MSG_PROPOSE_RUN_COMPLETION:
			return "ProposeRunCompletion";
		case 0x0006:
			/* V7 only, see above */
			return "AwaitingOn";

			/* Commands */
		case MSG_INPUT_COMMAND:
			return "Input";
		case MSG_OUTPUT_COMMAND:
			return "Output";
		case MSG_GET_LAZY_STATE_COMMAND:
			return "GetLazyState";
		case MSG_SET_STATE_COMMAND:
			return "SetState";
		case MSG_CLEAR_STATE_COMMAND:
			return "ClearState";
		case MSG_CLEAR_ALL_STATE_COMMAND:
			return "ClearAllState";
		case MSG_GET_LAZY_STATE_KEYS_COMMAND:
			return "GetLazyStateKeys";
		case MSG_GET_EAGER_STATE_COMMAND:
			return "GetEagerState";
		case MSG_GET_EAGER_STATE_KEYS_COMMAND:
			return "GetEagerStateKeys";
		case MSG_GET_PROMISE_COMMAND:
			return "GetPromise";
		case MSG_PEEK_PROMISE_COMMAND:
			return "PeekPromise";
		case MSG_COMPLETE_PROMISE_COMMAND:
			return "CompletePromise";
		case MSG_SLEEP_COMMAND:
			return "Sleep";
		case MSG_CALL_COMMAND:
			return "Call";
		case MSG_ONE_WAY_CALL_COMMAND:
			return "OneWayCall";
		case MSG_SEND_SIGNAL_COMMAND:
			return "SendSignal";
		case MSG_RUN_COMMAND:
			return "Run";
		case MSG_ATTACH_INVOCATION_COMMAND:
			return "AttachInvocation";
		case MSG_GET_INVOCATION_OUTPUT_COMMAND:
			return "GetInvocationOutput";
		case MSG_COMPLETE_AWAKEABLE_COMMAND:
			return "CompleteAwakeable";

			/* Notifications */
		case MSG_GET_LAZY_STATE_COMPLETION:
			return "GetLazyStateCompletion";
		case MSG_GET_LAZY_STATE_KEYS_COMPLETION:
			return "GetLazyStateKeysCompletion";
		case MSG_GET_PROMISE_COMPLETION:
			return "GetPromiseCompletion";
		case MSG_PEEK_PROMISE_COMPLETION:
			return "PeekPromiseCompletion";
		case MSG_COMPLETE_PROMISE_COMPLETION:
			return "CompletePromiseCompletion";
		case MSG_SLEEP_COMPLETION:
			return "SleepCompletion";
		case MSG_CALL_COMPLETION:
			return "CallCompletion";
		case MSG_CALL_INVOCATION_ID_COMPLETION:
			return "CallInvocationId";
		case MSG_RUN_COMPLETION:
			return "RunCompletion";
		case MSG_ATTACH_INVOCATION_COMPLETION:
			return "AttachInvocationCompletion";
		case MSG_GET_INVOCATION_OUTPUT_COMPLETION:
			return "GetInvocationOutputCompletion";
		case MSG_SIGNAL_NOTIFICATION:
			return "Signal";
	}

	if (MSG_IS_CUSTOM(type))
		return "Custom";
	return "Unknown";
}

FailureMetadata
protocol_failure_metadata(const Wire__Failure *failure)
{
	FailureMetadata m = {0};

	if (failure == NULL || failure->n_metadata == 0)
		return m;
	m.keys = palloc(sizeof(char *) * failure->n_metadata);
	m.values = palloc(sizeof(char *) * failure->n_metadata);
	for (size_t i = 0; i < failure->n_metadata; i++)
	{
		const char *k = failure->metadata[i]->key ? failure->metadata[i]->key : "";
		const char *v = failure->metadata[i]->value ? failure->metadata[i]->value : "";

		m.keys[m.n] = utf8_make_valid(k, strlen(k));
		m.values[m.n] = utf8_make_valid(v, strlen(v));
		m.n++;
	}
	return m;
}

/* Sets a notification's result and encodes it (palloc'd). */
static uint8 *
pack_notification(Wire__NotificationMessage *n, const NotificationResult *result,
				  size_t *len)
{
	Wire__Void v = WIRE__VOID__INIT;
	Wire__Value value = WIRE__VALUE__INIT;
	Wire__Failure failure = WIRE__FAILURE__INIT;
	uint8	   *buf;

	switch (result->kind)
	{
		case RESULT_VOID:
			n->result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_VOID;
			n->void_ = &v;
			break;
		case RESULT_VALUE:
			value.content.data = (uint8 *) result->value;
			value.content.len = result->value_len;
			n->result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_VALUE;
			n->value = &value;
			break;
		case RESULT_FAILURE:
			failure.code = result->failure_code;
			failure.message = (char *) (result->failure_message ? result->failure_message : "");
			failure.n_metadata = result->failure_metadata.n;
			if (failure.n_metadata > 0)
			{
				failure.metadata = palloc(sizeof(Wire__FailureMetadata *) * failure.n_metadata);
				for (int i = 0; i < result->failure_metadata.n; i++)
				{
					Wire__FailureMetadata *m = palloc(sizeof(Wire__FailureMetadata));

					wire__failure_metadata__init(m);
					m->key = result->failure_metadata.keys[i];
					m->value = result->failure_metadata.values[i];
					failure.metadata[i] = m;
				}
			}
			n->result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_FAILURE;
			n->failure = &failure;
			break;
		case RESULT_INVOCATION_ID:
			n->result_case = WIRE__NOTIFICATION_MESSAGE__RESULT_INVOCATION_ID;
			n->invocation_id = (char *) result->invocation_id;
			break;
	}
	*len = protobuf_c_message_get_packed_size(&n->base);
	buf = palloc(Max(*len, 1));
	protobuf_c_message_pack(&n->base, buf);
	return buf;
}

uint8 *
protocol_signal_notification(uint32 index, const char *name,
							 const NotificationResult *result, size_t *len)
{
	Wire__NotificationMessage n = WIRE__NOTIFICATION_MESSAGE__INIT;

	if (name != NULL)
	{
		n.id_case = WIRE__NOTIFICATION_MESSAGE__ID_SIGNAL_NAME;
		n.signal_name = (char *) name;
	}
	else
	{
		n.id_case = WIRE__NOTIFICATION_MESSAGE__ID_SIGNAL_ID;
		n.signal_id = index;
	}
	return pack_notification(&n, result, len);
}

uint8 *
protocol_completion_notification(uint32 completion_id, const NotificationResult *result,
								 size_t *len)
{
	Wire__NotificationMessage n = WIRE__NOTIFICATION_MESSAGE__INIT;

	n.id_case = WIRE__NOTIFICATION_MESSAGE__ID_COMPLETION_ID;
	n.completion_id = completion_id;
	return pack_notification(&n, result, len);
}

bool
protocol_decode_result(const uint8 *raw, size_t len, NotificationResult *result)
{
	Wire__NotificationMessage *n =
		wire__notification_message__unpack(&protocol_allocator, len, raw);

	memset(result, 0, sizeof(NotificationResult));
	if (n == NULL)
		return false;
	switch (n->result_case)
	{
		case WIRE__NOTIFICATION_MESSAGE__RESULT_VOID:
			result->kind = RESULT_VOID;
			return true;
		case WIRE__NOTIFICATION_MESSAGE__RESULT_VALUE:
			if (n->value == NULL)
				return false;
			result->kind = RESULT_VALUE;
			result->value = n->value->content.data;
			result->value_len = n->value->content.len;
			return true;
		case WIRE__NOTIFICATION_MESSAGE__RESULT_FAILURE:
			if (n->failure == NULL)
				return false;
			result->kind = RESULT_FAILURE;
			result->failure_code = n->failure->code;
			result->failure_message = n->failure->message ? n->failure->message : "";
			return true;
		default:
			return false;
	}
}

int
protocol_message_type(const char *name)
{
	/* Every type with a name of its own lies in these two ranges. */
	for (int type = 0; type < MSG_FIRST_CUSTOM; type++)
	{
		const char *n;

		if (type == 0x0010)
			type = MSG_FIRST_COMMAND;
		else if (type == MSG_FIRST_COMMAND + 0x20)
			type = MSG_FIRST_NOTIFICATION;
		else if (type == MSG_FIRST_NOTIFICATION + 0x20)
			type = MSG_SIGNAL_NOTIFICATION;
		n = protocol_message_name((uint16) type);
		if (strcmp(n, "Unknown") != 0 && strcmp(n, name) == 0)
			return type;
	}
	return -1;
}

/*
 * protobuf-c allocation callbacks.
 *
 * MCXT_ALLOC_NO_OOM: message bodies come from services we do not control,
 * and a length field can make protobuf-c ask for a lot of memory; letting
 * unpack fail (it copes with NULL) is better than erroring out from deep
 * inside protobuf-c.  MCXT_ALLOC_HUGE: a legitimate body may be up to
 * PROTOCOL_MAX_MESSAGE_SIZE, and repeated fields can need a multiple of
 * that, so the 1 GB palloc limit must not be what rejects it.
 */
static void *
protocol_alloc(void *allocator_data, size_t size)
{
	return palloc_extended(size, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

static void
protocol_free(void *allocator_data, void *pointer)
{
	if (pointer != NULL)
		pfree(pointer);
}
