/*-------------------------------------------------------------------------
 *
 * invocation_id.h
 *	  Restate-compatible invocation ids: raw bytes and "inv_1..." text.
 *
 * An invocation id is 24 raw bytes: a 64-bit partition key in big-endian
 * order followed by a 16-byte random uuid.  The raw form goes into
 * StartMessage.id; the text form ("inv_1" + 33 base62 characters) is what
 * users, SDK logs and the x-restate-invocation-id header see.  Both forms
 * are the ones Restate itself produces, so ids look alike everywhere.
 *
 * IDENTIFICATION
 *	  src/invocation_id.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_INVOCATION_ID_H
#define DURABLE_INVOCATION_ID_H

#include "postgres.h"

/* Length of the raw form: u64 partition key + 128-bit uuid. */
#define INVOCATION_ID_RAW_LEN	24

/* Text form: "inv_1" + 11 base62 chars (u64) + 22 base62 chars (u128). */
#define INVOCATION_ID_PREFIX	"inv_1"
#define INVOCATION_ID_PREFIX_LEN 5
#define INVOCATION_ID_TEXT_LEN	(INVOCATION_ID_PREFIX_LEN + 11 + 22)

/*
 * Partition key for a new invocation: a stable hash of the key for keyed
 * targets (so every invocation of one object/workflow key shares it), a
 * random value otherwise.
 */
extern uint64 invocation_partition_key(const char *service, const char *key);

/* Fill raw[INVOCATION_ID_RAW_LEN] with a fresh id in the given partition. */
extern void invocation_id_generate(uint64 partition_key, uint8 *raw);

/* The partition key stored in the first 8 bytes of a raw id. */
extern uint64 invocation_id_partition_key(const uint8 *raw);

/* Text form, palloc'd. */
extern char *invocation_id_format(const uint8 *raw);

/*
 * Text form into a caller-supplied buffer of at least
 * INVOCATION_ID_TEXT_LEN + 1 bytes; does not allocate.
 */
extern void invocation_id_format_into(const uint8 *raw, char *dst);

/*
 * Parse the text form into raw[INVOCATION_ID_RAW_LEN].  Returns false (and
 * leaves raw unspecified) unless text is exactly "inv_1" followed by 33
 * base62 characters encoding values that fit their fields.
 */
extern bool invocation_id_parse(const char *text, uint8 *raw);

/* invocation_id_parse, raising 22023 for a malformed id (SQL arguments). */
extern void invocation_id_parse_or_error(const char *text, uint8 *raw);

/*
 * Awakeable ids: "sign_1" + base64url without padding of (the raw
 * invocation id, 24 bytes, then the signal index as a big-endian u32), as
 * the SDKs build them.  The older "prom_1" prefix is accepted too.
 */
extern bool awakeable_id_parse(const char *text, uint8 *raw_invocation_id,
							   uint32 *signal_index);

#endif							/* DURABLE_INVOCATION_ID_H */
