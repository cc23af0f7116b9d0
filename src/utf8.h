/*-------------------------------------------------------------------------
 *
 * utf8.h
 *	  Turning bytes from a service into text PostgreSQL will accept.
 *
 * IDENTIFICATION
 *	  src/utf8.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_UTF8_H
#define DURABLE_UTF8_H

#include "postgres.h"

/* Are these bytes valid UTF-8 without NUL bytes? */
extern bool utf8_is_valid(const char *s, size_t len);

/*
 * A palloc'd, NUL-terminated copy of s in which every byte that does not
 * start a valid UTF-8 sequence, and every NUL, is replaced by U+FFFD.  The
 * result is valid in a UTF-8 database's text, json and jsonb, and safe to
 * pg_dump and restore.
 */
extern char *utf8_make_valid(const char *s, size_t len);

#endif							/* DURABLE_UTF8_H */
