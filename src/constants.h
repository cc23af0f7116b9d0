/*-------------------------------------------------------------------------
 *
 * constants.h
 *	  The numbers durable shares between its parts: protocol message types,
 *	  invocation statuses and the failure codes durable itself reports.
 *
 * Message types are fixed by Restate's service protocol.  Statuses are
 * stored by name (text) in durable.invocation; the names below are the only
 * spelling any C code or SQL statement of durable uses, and
 * docs/architecture.md draws the transitions between them (owned by
 * lifecycle.c).
 *
 * IDENTIFICATION
 *	  src/constants.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_CONSTANTS_H
#define DURABLE_CONSTANTS_H

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

/* The ranges of the message type space. */
#define MSG_FIRST_COMMAND		0x0400
#define MSG_FIRST_NOTIFICATION	0x8000
#define MSG_FIRST_CUSTOM		0xFC00

#define MSG_IS_CONTROL(t)		((t) < MSG_FIRST_COMMAND)
#define MSG_IS_COMMAND(t)		(((t) >= MSG_FIRST_COMMAND && (t) < MSG_FIRST_NOTIFICATION) || \
								 (t) >= MSG_FIRST_CUSTOM)
#define MSG_IS_NOTIFICATION(t)	((t) >= MSG_FIRST_NOTIFICATION && (t) < MSG_FIRST_CUSTOM)
#define MSG_IS_CUSTOM(t)		((t) >= MSG_FIRST_CUSTOM)

/* Header flag: the SDK asks for an acknowledgement (V7+, ignored by us). */
#define MSG_FLAG_REQUESTED_ACK	0x8000

/* Reserved signal index used for cancellation. */
#define SIGNAL_CANCEL			1
#define SIGNAL_CANCEL_TEXT		"1"

/* Signal indexes below this are reserved; awakeables take the others. */
#define SIGNAL_FIRST_AWAKEABLE	17

/*
 * Invocation statuses, as stored in durable.invocation.status.  "pending"
 * (an exclusive invocation of a virtual object or workflow queued behind
 * its key's lock) is not stored: it is a ready or scheduled invocation that
 * the lock rule holds back, and the invocations view shows it as such.
 */
#define STATUS_SCHEDULED	"scheduled"
#define STATUS_READY		"ready"
#define STATUS_RUNNING		"running"
#define STATUS_SUSPENDED	"suspended"
#define STATUS_BACKING_OFF	"backing-off"
#define STATUS_PAUSED		"paused"
#define STATUS_COMPLETED	"completed"

/*
 * Failure codes durable records for an attempt (last_failure_error_code) or
 * an invocation, beside those a service reports itself.  571 is
 * Restate's protocol violation code (570, journal mismatch, comes from the
 * SDK).
 */
#define FAILURE_BAD_REQUEST			400	/* a call with a bad target */
#define FAILURE_NOT_FOUND			404
#define FAILURE_CONFLICT			409	/* canceled, killed, promise completed twice */
#define FAILURE_TOO_LARGE			413
#define FAILURE_INTERNAL			500
#define FAILURE_NOT_SUPPORTED		501
#define FAILURE_UNREACHABLE			503
#define FAILURE_TIMEOUT				504
#define FAILURE_PROTOCOL_VIOLATION	571

#endif							/* DURABLE_CONSTANTS_H */
