/*-------------------------------------------------------------------------
 *
 * invocation_id.c
 *	  Generating, formatting and parsing Restate-compatible invocation ids.
 *
 * Raw form (24 bytes, what StartMessage.id carries):
 *
 *		bytes  0..7		partition key, big-endian u64
 *		bytes  8..23	uuid, 16 bytes
 *
 * Text form (38 characters): "inv_1", then the partition key as 11 base62
 * digits, then the uuid as 22 base62 digits.  The digit alphabet is 0-9,
 * a-z, A-Z (so 'a' is 10 and 'A' is 36), most significant digit first, and
 * each field is left-padded with '0' to its fixed width; 11 and 22 are the
 * smallest widths that hold any 64- and 128-bit value.
 *
 * The one non-obvious part is which integer gets encoded.  Restate converts
 * each field with to_be() before base62-encoding it, and on the
 * little-endian machines it runs on that swaps the bytes.  The net effect
 * is that the number written in base62 is the field's raw bytes read as a
 * little-endian integer.  We reproduce that exactly, so that our ids have
 * the same text as Restate would give the same raw bytes; it was checked
 * against ids captured from restate-server 1.7.12, e.g. raw
 * ec883ce44fd6fd75 3475b18598b887435a959aaeb1723fb4 is
 * inv_1a846Ht1BYF65u7C6QLaIRbd3k3cgKekcc.
 *
 * The base62 arithmetic works on big-endian byte arrays (repeated division
 * by 62 for encoding, multiply-and-add for decoding), which keeps a single
 * code path for both field widths and needs no 128-bit integer type.
 *
 * IDENTIFICATION
 *	  src/invocation_id.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "port/pg_bswap.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "invocation_id.h"

PG_FUNCTION_INFO_V1(durable_new_invocation_id);
PG_FUNCTION_INFO_V1(durable_invocation_id_bytes);
PG_FUNCTION_INFO_V1(durable_invocation_id_from_bytes);

/* Widths of the two fields, in raw bytes and in base62 digits. */
#define PARTITION_KEY_BYTES		8
#define PARTITION_KEY_DIGITS	11
#define UUID_BYTES				16
#define UUID_DIGITS				22

/*
 * Seed for hashing object keys into partition keys.  Any constant works;
 * what matters is that it never changes, since partition keys are stored.
 */
#define PARTITION_KEY_HASH_SEED	UINT64CONST(0x64757261626c65)	/* "durable" */

static const char base62_alphabet[] =
"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/*
 * Value of one base62 digit, or -1 if c is not in the alphabet.  Written as
 * ranges rather than a table lookup so that bytes >= 0x80 cannot index
 * anything.
 */
static int
base62_digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 36;
	return -1;
}

/*
 * Write the raw field field[0..nbytes-1] as exactly ndigits base62 digits.
 *
 * The field is first reversed into a big-endian number (see the file header
 * for why), then divided by 62 repeatedly; each remainder is the next digit
 * from the right.  ndigits is always large enough for nbytes, so the
 * quotient is zero by the time we run out of digits.
 */
static void
base62_encode_field(const uint8 *field, int nbytes, char *dst, int ndigits)
{
	uint8		number[UUID_BYTES];
	int			i;

	Assert(nbytes <= UUID_BYTES);

	for (i = 0; i < nbytes; i++)
		number[i] = field[nbytes - 1 - i];

	for (i = ndigits - 1; i >= 0; i--)
	{
		uint32		remainder = 0;
		int			j;

		for (j = 0; j < nbytes; j++)
		{
			uint32		cur = (remainder << 8) | number[j];

			number[j] = (uint8) (cur / 62);
			remainder = cur % 62;
		}
		dst[i] = base62_alphabet[remainder];
	}

#ifdef USE_ASSERT_CHECKING
	for (i = 0; i < nbytes; i++)
		Assert(number[i] == 0);
#endif
}

/*
 * Inverse of base62_encode_field.  Returns false for a character outside
 * the alphabet or for digits whose value does not fit in nbytes bytes (11
 * base62 digits can express values up to about 2^65.5, 22 up to 2^131).
 */
static bool
base62_decode_field(const char *src, int ndigits, uint8 *field, int nbytes)
{
	uint8		number[UUID_BYTES];
	int			i;

	Assert(nbytes <= UUID_BYTES);
	memset(number, 0, sizeof(number));

	for (i = 0; i < ndigits; i++)
	{
		int			digit = base62_digit_value(src[i]);
		uint32		carry;
		int			j;

		if (digit < 0)
			return false;

		/* number = number * 62 + digit */
		carry = (uint32) digit;
		for (j = nbytes - 1; j >= 0; j--)
		{
			uint32		cur = (uint32) number[j] * 62 + carry;

			number[j] = (uint8) cur;
			carry = cur >> 8;
		}
		if (carry != 0)
			return false;		/* overflow */
	}

	for (i = 0; i < nbytes; i++)
		field[i] = number[nbytes - 1 - i];
	return true;
}

uint64
invocation_partition_key(const char *service, const char *key)
{
	uint64		pkey;

	/*
	 * Keyed targets hash only the key, as Restate does; what must hold is
	 * that all invocations of one object or workflow key share a partition
	 * key.  The service is accepted so that callers need not change should
	 * that policy ever include it.  hash_bytes_extended is the hash that
	 * PostgreSQL's hash partitioning relies on, so its output cannot change
	 * between releases, which matters because partition keys are stored.
	 */
	if (key != NULL)
		return hash_bytes_extended((const unsigned char *) key,
								   (int) strlen(key),
								   PARTITION_KEY_HASH_SEED);

	if (!pg_strong_random(&pkey, sizeof(pkey)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random partition key")));
	return pkey;
}

void
invocation_id_generate(uint64 partition_key, uint8 *raw)
{
	int			i;

	for (i = 0; i < PARTITION_KEY_BYTES; i++)
		raw[i] = (uint8) (partition_key >> (8 * (PARTITION_KEY_BYTES - 1 - i)));

	if (!pg_strong_random(raw + PARTITION_KEY_BYTES, UUID_BYTES))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random invocation id")));

	/*
	 * Stamp the RFC 4122 version 4 and variant bits.  Nothing depends on
	 * them; they just make the uuid part recognisable as random when
	 * someone looks at raw ids.  122 random bits remain.
	 */
	raw[PARTITION_KEY_BYTES + 6] = (raw[PARTITION_KEY_BYTES + 6] & 0x0F) | 0x40;
	raw[PARTITION_KEY_BYTES + 8] = (raw[PARTITION_KEY_BYTES + 8] & 0x3F) | 0x80;
}

uint64
invocation_id_partition_key(const uint8 *raw)
{
	uint64		pkey = 0;
	int			i;

	for (i = 0; i < PARTITION_KEY_BYTES; i++)
		pkey = (pkey << 8) | raw[i];
	return pkey;
}

void
invocation_id_format_into(const uint8 *raw, char *dst)
{
	memcpy(dst, INVOCATION_ID_PREFIX, INVOCATION_ID_PREFIX_LEN);
	base62_encode_field(raw, PARTITION_KEY_BYTES,
						dst + INVOCATION_ID_PREFIX_LEN, PARTITION_KEY_DIGITS);
	base62_encode_field(raw + PARTITION_KEY_BYTES, UUID_BYTES,
						dst + INVOCATION_ID_PREFIX_LEN + PARTITION_KEY_DIGITS,
						UUID_DIGITS);
	dst[INVOCATION_ID_TEXT_LEN] = '\0';
}

char *
invocation_id_format(const uint8 *raw)
{
	char	   *text = palloc(INVOCATION_ID_TEXT_LEN + 1);

	invocation_id_format_into(raw, text);
	return text;
}

bool
invocation_id_parse(const char *text, uint8 *raw)
{
	const char *digits;

	if (text == NULL)
		return false;

	/*
	 * strnlen so that an overlong string is rejected without scanning all of
	 * it; the prefix check covers the resource type ("inv"), the separator
	 * and the id scheme version ("1"), all of which must match exactly.
	 */
	if (strnlen(text, INVOCATION_ID_TEXT_LEN + 1) != INVOCATION_ID_TEXT_LEN)
		return false;
	if (memcmp(text, INVOCATION_ID_PREFIX, INVOCATION_ID_PREFIX_LEN) != 0)
		return false;

	digits = text + INVOCATION_ID_PREFIX_LEN;
	if (!base62_decode_field(digits, PARTITION_KEY_DIGITS,
							 raw, PARTITION_KEY_BYTES))
		return false;
	if (!base62_decode_field(digits + PARTITION_KEY_DIGITS, UUID_DIGITS,
							 raw + PARTITION_KEY_BYTES, UUID_BYTES))
		return false;
	return true;
}

void
invocation_id_parse_or_error(const char *text, uint8 *raw)
{
	if (!invocation_id_parse(text, raw))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid invocation id \"%s\"", text),
				 errdetail("An invocation id is \"inv_1\" followed by 33 base62 characters.")));
}

bool
awakeable_id_parse(const char *text, uint8 *raw_invocation_id, uint32 *signal_index)
{
	/* 28 bytes of base64url without padding: 38 characters */
	const int	payload_len = INVOCATION_ID_RAW_LEN + 4;
	const int	encoded_len = (payload_len * 4 + 2) / 3;
	char		b64[64];
	char		decoded[64];
	size_t		len;
	int			n;
	uint32		index_be;

	if (text == NULL)
		return false;
	len = strnlen(text, 6 + encoded_len + 1);
	if (len != (size_t) (6 + encoded_len) ||
		(strncmp(text, "sign_1", 6) != 0 && strncmp(text, "prom_1", 6) != 0))
		return false;

	/* PostgreSQL's decoder speaks the standard alphabet, with padding. */
	for (int i = 0; i < encoded_len; i++)
	{
		char		c = text[6 + i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '+' || c == '/' || c == '=')
			return false;
		b64[i] = c;
	}
	n = encoded_len;
	while (n % 4 != 0)
		b64[n++] = '=';
	if (pg_b64_decode(b64, n, decoded, sizeof(decoded)) != payload_len)
		return false;
	memcpy(raw_invocation_id, decoded, INVOCATION_ID_RAW_LEN);
	memcpy(&index_be, decoded + INVOCATION_ID_RAW_LEN, sizeof(index_be));
	*signal_index = pg_ntoh32(index_be);
	return true;
}

/*
 * durable_new_invocation_id(service text, key text) returns text
 *
 * A fresh invocation id for a call to service, in the partition of key (or
 * a random partition when key is NULL).  Not STRICT, because a NULL key is
 * meaningful: it is how a plain service call is asked for.
 */
Datum
durable_new_invocation_id(PG_FUNCTION_ARGS)
{
	char	   *service;
	char	   *key = NULL;
	uint8		raw[INVOCATION_ID_RAW_LEN];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("service name must not be null")));

	service = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!PG_ARGISNULL(1))
		key = text_to_cstring(PG_GETARG_TEXT_PP(1));

	invocation_id_generate(invocation_partition_key(service, key), raw);
	PG_RETURN_TEXT_P(cstring_to_text(invocation_id_format(raw)));
}

/*
 * durable_invocation_id_bytes(id text) returns bytea
 *
 * The raw 24 bytes of a text invocation id.
 */
Datum
durable_invocation_id_bytes(PG_FUNCTION_ARGS)
{
	char	   *idtext = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bytea	   *result;

	result = (bytea *) palloc(VARHDRSZ + INVOCATION_ID_RAW_LEN);
	SET_VARSIZE(result, VARHDRSZ + INVOCATION_ID_RAW_LEN);

	invocation_id_parse_or_error(idtext, (uint8 *) VARDATA(result));

	PG_RETURN_BYTEA_P(result);
}

/*
 * durable_invocation_id_from_bytes(raw bytea) returns text
 *
 * The text form of a raw invocation id.
 */
Datum
durable_invocation_id_from_bytes(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);

	if (VARSIZE_ANY_EXHDR(raw) != INVOCATION_ID_RAW_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid raw invocation id length %d",
						(int) VARSIZE_ANY_EXHDR(raw)),
				 errdetail("A raw invocation id is %d bytes long.",
						   INVOCATION_ID_RAW_LEN)));

	PG_RETURN_TEXT_P(cstring_to_text(invocation_id_format((const uint8 *) VARDATA_ANY(raw))));
}
