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
#include "utils/timestamp.h"

/*
 * Where the body of a 2xx response goes, as it arrives.  Returns how many
 * of the len bytes it took; anything less aborts the transfer (result
 * CURLE_WRITE_ERROR, sink_refused set).  Runs inside a libcurl callback:
 * it must not raise an error.
 */
typedef size_t (*HttpSink) (void *context, const char *data, size_t len);

typedef struct HttpTransfer
{
	CURL	   *easy;
	struct curl_slist *headers;

	/* Request body; must stay valid until the transfer is finished. */
	const char *body;
	size_t		body_len;
	size_t		body_charged;	/* it and the transfer's own buffers, as
								 * charged to the budget */

	/*
	 * A streaming request (http_client_start_stream): body first, then what
	 * http_client_stream_send queues in more, until http_client_stream_close.
	 */
	bool		streaming;
	size_t		body_sent;
	StringInfoData more;
	size_t		more_sent;
	bool		input_closed;
	bool		upload_paused;	/* libcurl waits for more to send */
	TimestampTz last_received;	/* when response bytes last came; 0: never */

	/* Response */
	HttpSink	sink;
	void	   *sink_context;
	bool		sink_refused;
	long		status;			/* HTTP status, 0 until headers arrived */
	bool		status_ok;		/* 2xx: the body went to the sink */
	StringInfoData error_body;	/* first bytes of a non-2xx body */

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

/*
 * Prepares the process for transfers: the libcurl multi handle, and malloc
 * settings that give large freed buffers back to the system.
 */
extern void http_client_init(void);

/*
 * The dispatcher's memory budget (durable.dispatcher_memory_budget): bytes
 * of request and response bodies held by this process's transfers.
 * Request bodies (with an estimate of libcurl's own buffers) are charged
 * when a transfer starts; response buffers
 * reserve their room before they grow (http_client_reserve refuses what
 * would exceed the budget).  The dispatcher claims new attempts only while
 * http_client_has_room().
 */
extern bool http_client_reserve(size_t bytes);
extern void http_client_charge(size_t bytes);
extern void http_client_uncharge(size_t bytes);
extern size_t http_client_buffered(void);
extern size_t http_client_budget(void);
extern bool http_client_has_room(void);

/*
 * Starts a POST of body to url.  The transfer struct (and body, headers,
 * and the sink's context) must live until http_client_release.  The body
 * of a 2xx response goes to sink; of any other, the first 2 kB are kept in
 * error_body.
 */
extern void http_client_start_post(HttpTransfer *t, const char *url,
								   HttpVersionChoice version,
								   struct curl_slist *headers,
								   const char *body, size_t body_len,
								   long inactivity_timeout_ms,
								   long abort_timeout_ms,
								   HttpSink sink, void *sink_context);

/*
 * Starts a POST whose body is a stream: body first, then whatever
 * http_client_stream_send adds while the response comes in, until
 * http_client_stream_close ends it (HTTP/2: one stream, both directions at
 * once).  No time limits are set: the owner watches the stream and ends it
 * with http_client_abort.
 */
extern void http_client_start_stream(HttpTransfer *t, const char *url,
									 HttpVersionChoice version,
									 struct curl_slist *headers,
									 const char *body, size_t body_len,
									 HttpSink sink, void *sink_context);

/* Queues bytes on a streaming request's body and sends them. */
extern void http_client_stream_send(HttpTransfer *t, const char *data, size_t len);

/* Ends a streaming request's body; the response may go on. */
extern void http_client_stream_close(HttpTransfer *t);

/*
 * Stops a transfer that is still running: it is finished with result
 * (e.g. CURLE_OPERATION_TIMEDOUT) and message.  It is not returned by
 * http_client_next_finished.
 */
extern void http_client_abort(HttpTransfer *t, CURLcode result, const char *message);

/*
 * Releases the libcurl handle of a transfer, finished or not, and the
 * budget charge of its request body.  Calling it twice is harmless.
 */
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
