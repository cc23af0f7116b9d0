/*-------------------------------------------------------------------------
 *
 * http_client.h
 *	  Non-blocking HTTP transfers: libcurl's multi interface driven from a
 *	  PostgreSQL WaitEventSet.
 *
 * IDENTIFICATION
 *	  src/http_client.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_HTTP_CLIENT_H
#define DURABLE_HTTP_CLIENT_H

#include "postgres.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"

typedef struct HttpTransfer
{
	CURL	   *easy;
	struct curl_slist *headers;

	/* Request body; must stay valid until the transfer is finished. */
	const char *body;
	size_t		body_len;

	/* Response */
	StringInfoData response;
	long		status;			/* HTTP status, 0 until headers arrived */
	bool		status_ok;		/* 2xx: response carries protocol frames */
	size_t		scan_offset;	/* start of the next unscanned frame */
	bool		frame_too_large;
	bool		response_too_large;
	uint32		too_large_length;
	size_t		max_message_size;

	/* Completion */
	bool		finished;
	CURLcode	result;
	char		errbuf[CURL_ERROR_SIZE];

	void	   *owner;
} HttpTransfer;

/* How the request is sent. */
typedef enum HttpVersionChoice
{
	HTTP_VERSION_AUTO,			/* h2c prior knowledge for http, ALPN for https */
	HTTP_VERSION_1_1,
	HTTP_VERSION_2
} HttpVersionChoice;

extern HttpVersionChoice http_version_from_text(const char *text);
/* HTTP version and TLS settings shared by invocations and discovery. */
extern void http_configure(CURL *easy, const char *url, HttpVersionChoice version);

extern void http_client_init(void);

/*
 * Starts a POST of body to url.  The transfer struct (and body, headers)
 * must live until http_client_next_finished returns it.
 */
extern void http_client_start_post(HttpTransfer *t, const char *url,
								   HttpVersionChoice version,
								   struct curl_slist *headers,
								   const char *body, size_t body_len,
								   long inactivity_timeout_ms,
								   long abort_timeout_ms,
								   size_t max_message_size);

/* Releases the libcurl handle of a transfer, finished or not. */
extern void http_client_release(HttpTransfer *t);

/*
 * Sleeps until the latch is set, a socket is ready, libcurl's timer fires
 * or timeout_ms (-1: none) elapses, then lets libcurl make progress.
 * Exits the process if the postmaster died.  Returns true if the latch
 * was set.
 */
extern bool http_client_wait(long timeout_ms, uint32 wait_event_info);

/* Returns the next finished transfer, or NULL. */
extern HttpTransfer *http_client_next_finished(void);

#endif							/* DURABLE_HTTP_CLIENT_H */
