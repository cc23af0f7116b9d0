/*-------------------------------------------------------------------------
 *
 * protocol.h
 *	  Restate service protocol: message type codes and frame headers.
 *
 * Every message on the wire is an 8-byte big-endian header followed by a
 * protobuf body.  The header packs the message type (bits 63..48), flags
 * (bits 47..32, of which only REQUESTED_ACK is defined) and the body length
 * (bits 31..0).  The protobuf bodies themselves are described by our own
 * protocol.proto and encoded/decoded with protobuf-c.
 *
 * IDENTIFICATION
 *	  src/protocol.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_PROTOCOL_H
#define DURABLE_PROTOCOL_H

#include "postgres.h"

#include "constants.h"

#define PROTOCOL_FRAME_HEADER_SIZE	8

/* Largest single message body we accept from a service. */
#define PROTOCOL_MAX_MESSAGE_SIZE	(32 * 1024 * 1024)

/* Protocol versions this runtime can speak. */
#define PROTOCOL_MIN_VERSION	5
#define PROTOCOL_MAX_VERSION	6

/* Returns a stable name for a message type, e.g. "Run" or "Output". */
extern const char *protocol_message_name(uint16 type);

/* The metadata (key/value pairs) of a failure, as TerminalError carries it. */
typedef struct FailureMetadata
{
	int			n;
	char	  **keys;
	char	  **values;
} FailureMetadata;

/* What a notification (a signal, an awakeable's or a call's completion) carries. */
typedef enum NotificationResultKind
{
	RESULT_VOID,
	RESULT_VALUE,
	RESULT_FAILURE,
	RESULT_INVOCATION_ID		/* CallInvocationIdCompletion */
} NotificationResultKind;

typedef struct NotificationResult
{
	NotificationResultKind kind;
	const uint8 *value;			/* RESULT_VALUE */
	size_t		value_len;
	uint32		failure_code;	/* RESULT_FAILURE */
	const char *failure_message;
	FailureMetadata failure_metadata;
	const char *invocation_id;	/* RESULT_INVOCATION_ID */
} NotificationResult;

/*
 * Encodes the SignalNotification for signal index (or, when name is not
 * NULL, the named signal) carrying result; palloc'd, length in *len.
 */
extern uint8 *protocol_signal_notification(uint32 index, const char *name,
										   const NotificationResult *result, size_t *len);

/* A decoded Failure's metadata, as valid UTF-8 text (palloc'd). */
struct Wire__Failure;
extern FailureMetadata protocol_failure_metadata(const struct Wire__Failure *failure);

/* Encodes a notification for completion_id carrying result; palloc'd. */
extern uint8 *protocol_completion_notification(uint32 completion_id,
											   const NotificationResult *result,
											   size_t *len);

/*
 * Reads the result of an encoded notification (pointing into a copy that
 * lives in the current memory context).  False if it does not decode or
 * carries no value, failure or void.
 */
extern bool protocol_decode_result(const uint8 *raw, size_t len, NotificationResult *result);

/* The type a name of protocol_message_name stands for; -1 if none. */
extern int	protocol_message_type(const char *name);

/*
 * A protobuf-c allocator that takes memory from CurrentMemoryContext, so an
 * unpacked message can be released by resetting or deleting that context
 * (or with the usual *__free_unpacked call).  Allocation failures are
 * returned to protobuf-c as NULL rather than raised, so unpacking hostile
 * bytes fails cleanly.  Declared with the struct tag so that this header
 * need not include protobuf-c.h; pass &protocol_allocator.
 */
struct ProtobufCAllocator;
extern struct ProtobufCAllocator protocol_allocator;

static inline void
frame_header_write(uint8 *dst, uint16 type, uint16 flags, uint32 length)
{
	dst[0] = (uint8) (type >> 8);
	dst[1] = (uint8) type;
	dst[2] = (uint8) (flags >> 8);
	dst[3] = (uint8) flags;
	dst[4] = (uint8) (length >> 24);
	dst[5] = (uint8) (length >> 16);
	dst[6] = (uint8) (length >> 8);
	dst[7] = (uint8) length;
}

static inline void
frame_header_read(const uint8 *src, uint16 *type, uint16 *flags, uint32 *length)
{
	*type = (uint16) ((src[0] << 8) | src[1]);
	*flags = (uint16) ((src[2] << 8) | src[3]);
	*length = ((uint32) src[4] << 24) | ((uint32) src[5] << 16) |
		((uint32) src[6] << 8) | (uint32) src[7];
}

#endif							/* DURABLE_PROTOCOL_H */
