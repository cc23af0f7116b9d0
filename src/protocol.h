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

#define PROTOCOL_FRAME_HEADER_SIZE	8

/* Largest single message body we accept from a service. */
#define PROTOCOL_MAX_MESSAGE_SIZE	(32 * 1024 * 1024)

/* Protocol versions this runtime can speak. */
#define PROTOCOL_MIN_VERSION	5
#define PROTOCOL_MAX_VERSION	6

/* Control messages */
#define MSG_START						0x0000
#define MSG_SUSPENSION					0x0001
#define MSG_ERROR						0x0002
#define MSG_END							0x0003
#define MSG_PROPOSE_RUN_COMPLETION		0x0005

/* Commands */
#define MSG_INPUT_COMMAND				0x0400
#define MSG_OUTPUT_COMMAND				0x0401
#define MSG_GET_LAZY_STATE_COMMAND		0x0402
#define MSG_SET_STATE_COMMAND			0x0403
#define MSG_CLEAR_STATE_COMMAND			0x0404
#define MSG_CLEAR_ALL_STATE_COMMAND		0x0405
#define MSG_GET_LAZY_STATE_KEYS_COMMAND	0x0406
#define MSG_GET_EAGER_STATE_COMMAND		0x0407
#define MSG_GET_EAGER_STATE_KEYS_COMMAND 0x0408
#define MSG_GET_PROMISE_COMMAND			0x0409
#define MSG_PEEK_PROMISE_COMMAND		0x040A
#define MSG_COMPLETE_PROMISE_COMMAND	0x040B
#define MSG_SLEEP_COMMAND				0x040C
#define MSG_CALL_COMMAND				0x040D
#define MSG_ONE_WAY_CALL_COMMAND		0x040E
#define MSG_SEND_SIGNAL_COMMAND			0x0410
#define MSG_RUN_COMMAND					0x0411
#define MSG_ATTACH_INVOCATION_COMMAND	0x0412
#define MSG_GET_INVOCATION_OUTPUT_COMMAND 0x0413
#define MSG_COMPLETE_AWAKEABLE_COMMAND	0x0414

/* Notifications */
#define MSG_GET_LAZY_STATE_COMPLETION	0x8002
#define MSG_GET_LAZY_STATE_KEYS_COMPLETION 0x8006
#define MSG_GET_PROMISE_COMPLETION		0x8009
#define MSG_PEEK_PROMISE_COMPLETION		0x800A
#define MSG_COMPLETE_PROMISE_COMPLETION	0x800B
#define MSG_SLEEP_COMPLETION			0x800C
#define MSG_CALL_COMPLETION				0x800D
#define MSG_CALL_INVOCATION_ID_COMPLETION 0x800E
#define MSG_RUN_COMPLETION				0x8011
#define MSG_ATTACH_INVOCATION_COMPLETION 0x8012
#define MSG_GET_INVOCATION_OUTPUT_COMPLETION 0x8013
#define MSG_SIGNAL_NOTIFICATION			0xFBFF

#define MSG_IS_CONTROL(t)		((t) < 0x0400)
#define MSG_IS_COMMAND(t)		(((t) >= 0x0400 && (t) < 0x8000) || (t) >= 0xFC00)
#define MSG_IS_NOTIFICATION(t)	((t) >= 0x8000 && (t) < 0xFC00)
#define MSG_IS_CUSTOM(t)		((t) >= 0xFC00)

/* Header flag: the SDK asks for an acknowledgement (V7+, ignored by us). */
#define MSG_FLAG_REQUESTED_ACK	0x8000

/* Reserved signal index used for cancellation. */
#define SIGNAL_CANCEL			1

/* Returns a stable name for a message type, e.g. "Run" or "Output". */
extern const char *protocol_message_name(uint16 type);

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
