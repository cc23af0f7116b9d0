/*-------------------------------------------------------------------------
 *
 * entry_json.h
 *	  Human-readable JSON descriptions of protocol messages.
 *
 * Used to show journal entries to users (durable_decode_entry) and in log
 * and error messages.  The output is always a single JSON object whose
 * "type" member is protocol_message_name(type).
 *
 * IDENTIFICATION
 *	  src/entry_json.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_ENTRY_JSON_H
#define DURABLE_ENTRY_JSON_H

#include "postgres.h"

#include "lib/stringinfo.h"

/*
 * Describe one message body of the given type as a palloc'd JSON object,
 * e.g. {"type":"Run","name":"step-1","completion_id":2}.  Never raises an
 * error because of the bytes: a body that does not decode gives
 * {"type":"Run","error":"undecodable"}, and types we have no decoder for
 * (custom commands, unknown codes) give {"type":"Custom","code":64512,
 * "length":12}.  The result is accepted by jsonb_in.  Palloc'd in the
 * caller's memory context; the decoding itself uses a private one.
 */
extern char *journal_entry_to_json(uint16 type, const uint8 *body, size_t len);

/*
 * Append an opaque payload (a Value's content, a call parameter, a state
 * value) as JSON: embedded as-is when the bytes are themselves JSON, as a
 * JSON string when they are text, else as {"base64":"..."}.
 */
extern void json_append_payload(StringInfo buf, const char *data, size_t len);

/*
 * Append bytes as a JSON string when they are text, else as
 * {"base64":"..."}.  For keys and names, which must not be reinterpreted as
 * JSON values.
 */
extern void json_append_text(StringInfo buf, const char *data, size_t len);

#endif							/* DURABLE_ENTRY_JSON_H */
