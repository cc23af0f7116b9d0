/*-------------------------------------------------------------------------
 *
 * http_client.c
 *	  Non-blocking HTTP transfers: libcurl's multi interface driven from a
 *	  PostgreSQL WaitEventSet.
 *
 * A dispatcher must sleep on its latch (new work), on postmaster death and
 * on every socket libcurl is interested in, all at once.  libcurl tells us
 * which sockets to watch through CURLMOPT_SOCKETFUNCTION and when to call
 * back through CURLMOPT_TIMERFUNCTION; we rebuild a WaitEventSet from that
 * on every wait and feed readiness back with curl_multi_socket_action().
 *
 * The client knows no protocol: the body of a 2xx response goes to the
 * sink its owner registered (for invocations, a FrameReader), any other
 * body is kept only for the error message.  It also keeps the process's
 * memory budget, which both sides charge.
 *
 * IDENTIFICATION
 *	  src/http_client.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "durable.h"
#include "http_client.h"

typedef struct WatchedSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} WatchedSocket;

static CURLM *multi = NULL;
static WatchedSocket *sockets = NULL;
static int	nsockets = 0;
static int	max_sockets = 0;
/* When libcurl wants to be called back (0: no timer).  One-shot. */
static TimestampTz curl_deadline = 0;

/* Bytes of request and response bodies held by this process's transfers. */
static size_t buffered = 0;

/*
 * What a transfer holds besides its bodies, charged to the budget as a
 * fixed estimate: libcurl's upload and download buffers (64 kB and 16 kB
 * by default), and, since every attempt has a connection of its own, the
 * connection's input buffer and HTTP/2 session (about 48 kB more).
 */
#define TRANSFER_OVERHEAD (128 * 1024)

/* Non-2xx bodies are only kept for the error message. */
#define ERROR_BODY_LIMIT 2048

/*
 * Allocations from this size up get pages of their own, given back to the
 * system when freed.  Setting it also stops glibc from raising it after
 * each large free (its default, dynamic threshold climbs to 32 MB, which
 * is how a dispatcher kept hundreds of megabytes after large responses).
 * Measured with test/t/080_memory.pl (200 attempts streaming 1 MB
 * messages, 64 MB budget): peak resident size rose by 54 MB with these
 * settings and by 81 MB, beyond the budget, without them.
 */
#define MMAP_THRESHOLD (256 * 1024)
/* Free memory at the top of the heap beyond this is returned as well. */
#define TRIM_THRESHOLD (1024 * 1024)

size_t
http_client_budget(void)
{
	return (size_t) durable_dispatcher_memory_budget_kb * 1024;
}

bool
http_client_reserve(size_t bytes)
{
	if (buffered + bytes > http_client_budget())
		return false;
	buffered += bytes;
	return true;
}

void
http_client_charge(size_t bytes)
{
	buffered += bytes;
}

void
http_client_uncharge(size_t bytes)
{
	Assert(bytes <= buffered);
	buffered -= Min(bytes, buffered);
}

size_t
http_client_buffered(void)
{
	return buffered;
}

bool
http_client_has_room(void)
{
	return buffered < http_client_budget();
}

HttpVersionChoice
http_version_from_text(const char *text)
{
	if (text == NULL)
		return HTTP_VERSION_AUTO;
	if (strcmp(text, "1.1") == 0)
		return HTTP_VERSION_1_1;
	return HTTP_VERSION_2;
}

void
http_configure(CURL *easy, const char *url, HttpVersionChoice version)
{
	bool		tls = pg_strncasecmp(url, "https:", 6) == 0;

	/*
	 * HTTP(S) only, and no redirect is followed: a deployment must not be
	 * able to send durable (and the headers it was registered with) to
	 * another host or scheme, such as file:// or an internal address.
	 */
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);

	if (version == HTTP_VERSION_1_1)
		curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
	else if (tls)
		curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
	else
		curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
						 (long) CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);

	/*
	 * Services behind a private CA: its file replaces the system's CA store
	 * (both the bundle and the hashed directory libcurl was built with).
	 */
	if (tls && durable_tls_ca_file != NULL && durable_tls_ca_file[0] != '\0')
	{
		curl_easy_setopt(easy, CURLOPT_CAINFO, durable_tls_ca_file);
		curl_easy_setopt(easy, CURLOPT_CAPATH, NULL);
	}
}

static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < nsockets; i++)
		if (sockets[i].fd == fd)
			break;

	if (what == CURL_POLL_REMOVE)
	{
		if (i < nsockets)
			sockets[i] = sockets[--nsockets];
		return 0;
	}

	if (i == nsockets)
	{
		if (nsockets == max_sockets)
		{
			max_sockets = Max(16, max_sockets * 2);
			sockets = sockets
				? repalloc(sockets, sizeof(WatchedSocket) * max_sockets)
				: MemoryContextAlloc(TopMemoryContext, sizeof(WatchedSocket) * max_sockets);
		}
		sockets[nsockets].fd = fd;
		nsockets++;
	}
	sockets[i].what = what;
	return 0;
}

static int
timer_callback(CURLM *m, long timeout_ms, void *userp)
{
	curl_deadline = timeout_ms < 0 ? 0 :
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

void
http_client_init(void)
{
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR, (errmsg("could not create a libcurl multi handle")));
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_callback);
	/*
	 * No HTTP/2 multiplexing: libcurl 7.88 (Debian 12) breaks requests that
	 * share or reuse an HTTP/2 connection ("Error in the HTTP2 framing
	 * layer"), so every HTTP/2 attempt gets a connection of its own.
	 */
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long) CURLPIPE_NOTHING);

	mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
	mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
}

/*
 * Hands a 2xx body to the sink, keeps the start of any other.  Returning a
 * short count makes libcurl abort the transfer with CURLE_WRITE_ERROR.
 */
static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userdata)
{
	HttpTransfer *t = (HttpTransfer *) userdata;
	size_t		len = size * nmemb;
	size_t		taken;

	t->last_received = GetCurrentTimestamp();
	if (t->status == 0)
	{
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
		t->status_ok = (t->status >= 200 && t->status < 300);
	}

	if (!t->status_ok)
	{
		size_t		room = ERROR_BODY_LIMIT - Min(ERROR_BODY_LIMIT, (size_t) t->error_body.len);

		/* Within the buffer initStringInfo allocated: cannot fail. */
		appendBinaryStringInfo(&t->error_body, data, Min(room, len));
		return len;
	}

	taken = t->sink(t->sink_context, data, len);
	if (taken < len)
		t->sink_refused = true;
	return taken;
}

/*
 * Feeds a streaming request's body to libcurl: body, then the queued
 * bytes; when there is nothing more to send yet, pauses the upload until
 * http_client_stream_send or http_client_stream_close.
 */
static size_t
read_callback(char *buffer, size_t size, size_t nitems, void *userdata)
{
	HttpTransfer *t = (HttpTransfer *) userdata;
	size_t		room = size * nitems;
	size_t		n;

	if (t->body_sent < t->body_len)
	{
		n = Min(room, t->body_len - t->body_sent);
		memcpy(buffer, t->body + t->body_sent, n);
		t->body_sent += n;
		return n;
	}
	if (t->more_sent < (size_t) t->more.len)
	{
		n = Min(room, (size_t) t->more.len - t->more_sent);
		memcpy(buffer, t->more.data + t->more_sent, n);
		t->more_sent += n;
		return n;
	}
	if (t->input_closed)
		return 0;
	t->upload_paused = true;
	return CURL_READFUNC_PAUSE;
}

/* What every transfer shares; the caller adds the body and time limits. */
static CURL *
new_transfer(HttpTransfer *t, const char *url, HttpVersionChoice version,
			 struct curl_slist *headers, const char *body, size_t body_len,
			 HttpSink sink, void *sink_context)
{
	CURL	   *easy = curl_easy_init();

	if (easy == NULL)
		ereport(ERROR, (errmsg("could not create a libcurl handle")));

	t->easy = easy;
	t->headers = headers;
	t->body = body;
	t->body_len = body_len;
	t->body_charged = body_len + TRANSFER_OVERHEAD;
	http_client_charge(t->body_charged);
	t->sink = sink;
	t->sink_context = sink_context;
	t->sink_refused = false;
	initStringInfo(&t->error_body);
	/* Room for all of it now: the write callback must not allocate. */
	enlargeStringInfo(&t->error_body, ERROR_BODY_LIMIT);
	t->status = 0;
	t->status_ok = false;
	t->finished = false;
	t->result = CURLE_OK;
	t->errbuf[0] = '\0';
	t->streaming = false;
	t->last_received = 0;

	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	http_configure(easy, url, version);

	/* See http_client_init: one connection per HTTP/2 attempt. */
	if (version != HTTP_VERSION_1_1)
		curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
	if (getenv("DURABLE_CURL_VERBOSE"))
		curl_easy_setopt(easy, CURLOPT_VERBOSE, 1L);
	return easy;
}

static void
add_transfer(HttpTransfer *t)
{
	CURLMcode	rc = curl_multi_add_handle(multi, t->easy);

	if (rc != CURLM_OK)
	{
		curl_easy_cleanup(t->easy);
		t->easy = NULL;
		http_client_uncharge(t->body_charged);
		t->body_charged = 0;
		ereport(ERROR,
				(errmsg("could not start HTTP request: %s", curl_multi_strerror(rc))));
	}
}

void
http_client_start_post(HttpTransfer *t, const char *url,
					   HttpVersionChoice version,
					   struct curl_slist *headers,
					   const char *body, size_t body_len,
					   long inactivity_timeout_ms,
					   long abort_timeout_ms,
					   HttpSink sink, void *sink_context)
{
	CURL	   *easy = new_transfer(t, url, version, headers, body, body_len,
									sink, sink_context);

	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, abort_timeout_ms);
	/* "Received nothing for this long" is libcurl's low-speed check. */
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, Max(1L, inactivity_timeout_ms / 1000));
	add_transfer(t);
}

void
http_client_start_stream(HttpTransfer *t, const char *url,
						 HttpVersionChoice version,
						 struct curl_slist *headers,
						 const char *body, size_t body_len,
						 HttpSink sink, void *sink_context)
{
	CURL	   *easy = new_transfer(t, url, version, headers, body, body_len,
									sink, sink_context);

	t->streaming = true;
	t->body_sent = 0;
	initStringInfo(&t->more);
	t->more_sent = 0;
	t->input_closed = false;
	t->upload_paused = false;
	/* No length: the body ends when we say so. */
	curl_easy_setopt(easy, CURLOPT_READFUNCTION, read_callback);
	curl_easy_setopt(easy, CURLOPT_READDATA, t);
	add_transfer(t);
}

/* Lets libcurl call read_callback again if it had paused the upload. */
static void
resume_upload(HttpTransfer *t)
{
	if (t->upload_paused && t->easy != NULL && !t->finished)
	{
		t->upload_paused = false;
		curl_easy_pause(t->easy, CURLPAUSE_CONT);
	}
}

void
http_client_stream_send(HttpTransfer *t, const char *data, size_t len)
{
	Assert(t->streaming && !t->input_closed);
	if (t->easy == NULL || t->finished)
		return;
	/* All sent: start the buffer over. */
	if (t->more_sent == (size_t) t->more.len)
	{
		resetStringInfo(&t->more);
		t->more_sent = 0;
	}
	appendBinaryStringInfo(&t->more, data, (int) len);
	resume_upload(t);
}

void
http_client_stream_close(HttpTransfer *t)
{
	Assert(t->streaming);
	if (t->input_closed)
		return;
	t->input_closed = true;
	resume_upload(t);
}

void
http_client_abort(HttpTransfer *t, CURLcode result, const char *message)
{
	if (t->easy == NULL || t->finished)
		return;
	curl_multi_remove_handle(multi, t->easy);
	t->finished = true;
	t->result = result;
	strlcpy(t->errbuf, message, sizeof(t->errbuf));
}

void
http_client_release(HttpTransfer *t)
{
	if (t->easy)
	{
		curl_multi_remove_handle(multi, t->easy);
		curl_easy_cleanup(t->easy);
		t->easy = NULL;
	}
	if (t->headers)
		curl_slist_free_all(t->headers);
	t->headers = NULL;
	http_client_uncharge(t->body_charged);
	t->body_charged = 0;
}

bool
http_client_wait(long timeout_ms, uint32 wait_event_info)
{
	bool		latch_set = false;
	WaitEventSet *set;
	WaitEvent  *events;
	int			nevents;
	int			nfired;
	int			running;
	long		effective = timeout_ms;

	if (curl_deadline != 0)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		curl_ms = now >= curl_deadline ? 0 :
			(long) TimestampDifferenceMilliseconds(now, curl_deadline) + 1;

		if (effective < 0 || curl_ms < effective)
			effective = curl_ms;
	}

	set = CreateWaitEventSet(CurrentMemoryContext, nsockets + 2);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < nsockets; i++)
	{
		uint32		ev = 0;

		if (sockets[i].what & CURL_POLL_IN)
			ev |= WL_SOCKET_READABLE;
		if (sockets[i].what & CURL_POLL_OUT)
			ev |= WL_SOCKET_WRITEABLE;
		AddWaitEventToSet(set, ev, sockets[i].fd, NULL, NULL);
	}

	nevents = nsockets + 2;
	events = palloc(sizeof(WaitEvent) * nevents);
	nfired = WaitEventSetWait(set, effective, events, nevents, wait_event_info);
	FreeWaitEventSet(set);

	for (int i = 0; i < nfired; i++)
	{
		int			flags = 0;

		if (events[i].events & WL_LATCH_SET)
		{
			latch_set = true;
			continue;
		}
		if (events[i].events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		if (flags != 0)
			curl_multi_socket_action(multi, events[i].fd, flags, &running);
	}
	pfree(events);

	/*
	 * Run libcurl's timers once they are due.  The timer is one-shot: clear
	 * it first, libcurl sets a new one from inside the call if it needs one.
	 */
	if (curl_deadline != 0 && GetCurrentTimestamp() >= curl_deadline)
	{
		curl_deadline = 0;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	return latch_set;
}

HttpTransfer *
http_client_next_finished(void)
{
	CURLMsg    *msg;
	int			pending;

	while ((msg = curl_multi_info_read(multi, &pending)) != NULL)
	{
		HttpTransfer *t = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		if (t == NULL)
			continue;
		t->finished = true;
		t->result = msg->data.result;
		if (t->status == 0)
		{
			curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
			t->status_ok = (t->status >= 200 && t->status < 300);
		}
		return t;
	}
	return NULL;
}
