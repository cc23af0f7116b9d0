/*-------------------------------------------------------------------------
 *
 * utf8.c
 *	  Turning bytes from a service into text PostgreSQL will accept.
 *
 * Protobuf string fields are UTF-8 by contract, but protobuf-c does not
 * check, and services we do not control can send anything.  PostgreSQL
 * checks encodings only where data enters from a client: text or jsonb we
 * build in C from such bytes is stored as is, and then a pg_dump of it no
 * longer restores ("invalid byte sequence for encoding UTF8").  So every
 * string from a service passes through here before it reaches a text
 * column or a JSON document.  Sequences are judged by PostgreSQL's own
 * pg_utf_mblen and pg_utf8_islegal, so we accept exactly what it accepts.
 *
 * IDENTIFICATION
 *	  src/utf8.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "utf8.h"

/* U+FFFD REPLACEMENT CHARACTER in UTF-8 */
#define REPLACEMENT_CHARACTER "\xEF\xBF\xBD"

/*
 * Length of the valid sequence at s (at most len bytes available), or 0 if
 * the byte there is a NUL or does not start one.
 */
static inline int
valid_sequence_length(const unsigned char *s, size_t len)
{
	int			l;

	if (*s == '\0')
		return 0;
	if (!IS_HIGHBIT_SET(*s))
		return 1;
	l = pg_utf_mblen(s);
	if ((size_t) l > len || !pg_utf8_islegal(s, l))
		return 0;
	return l;
}

bool
utf8_is_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	const unsigned char *end = p + len;

	while (p < end)
	{
		int			l = valid_sequence_length(p, end - p);

		if (l == 0)
			return false;
		p += l;
	}
	return true;
}

char *
utf8_make_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	const unsigned char *end = p + len;
	StringInfoData buf;

	initStringInfo(&buf);
	if (len == 0)
		return buf.data;
	enlargeStringInfo(&buf, (int) Min(len, (size_t) (MaxAllocSize / 4)));

	while (p < end)
	{
		const unsigned char *run = p;
		int			l;

		/* Copy valid stretches whole. */
		while (p < end && (l = valid_sequence_length(p, end - p)) > 0)
			p += l;
		if (p > run)
			appendBinaryStringInfo(&buf, (const char *) run, (int) (p - run));
		if (p < end)
		{
			appendBinaryStringInfo(&buf, REPLACEMENT_CHARACTER,
								   sizeof(REPLACEMENT_CHARACTER) - 1);
			p++;
		}
	}
	return buf.data;
}
