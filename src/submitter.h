/*-------------------------------------------------------------------------
 *
 * submitter.h
 *	  Commits an invocation in a transaction of its own, on behalf of a
 *	  backend (used by durable.call).
 *
 * IDENTIFICATION
 *	  src/submitter.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_SUBMITTER_H
#define DURABLE_SUBMITTER_H

#include "postgres.h"

/*
 * Creates the invocation and commits it independently of the caller's
 * transaction; returns its id.  Errors raised by durable.send (unknown
 * service, missing key, ...) are re-raised in the caller.
 */
extern char *submit_invocation(const char *service, const char *handler,
							   const char *input_json, const char *key,
							   const char *idempotency_key,
							   const char *headers_json);

#endif							/* DURABLE_SUBMITTER_H */
