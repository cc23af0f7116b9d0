/*-------------------------------------------------------------------------
 *
 * frame_reader.c
 *	  Buffers a service's response stream frame by frame, refusing what
 *	  would exceed the limits before it is buffered.
 *
 * The HTTP client knows nothing about the protocol: it hands the bytes of
 * a 2xx response to a sink.  For invocations the sink is a FrameReader.
 * It reads each 8-byte frame header as soon as it is complete and checks,
 * before taking the body, that the frame fits durable.max_message_size,
 * that the response as a whole fits durable.max_response_size, and that
 * the dispatcher's memory budget has room for it.  The buffer grows to hold
 * exactly the frame announced, so what is charged to the budget is what is
 * allocated.  Refusing stops the transfer (libcurl aborts it when the sink
 * takes less than it was given); the attempt then fails with the reason.
 *
 * Everything here may run inside a libcurl callback, so nothing may raise
 * an error: allocation failures become refusals.
 *
 * IDENTIFICATION
 *	  src/frame_reader.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "frame_reader.h"
#include "http_client.h"
#include "protocol.h"

/* Smallest buffer we allocate: most responses are a few hundred bytes. */
#define FRAME_READER_MIN_CAPACITY 1024

/*
 * Returns the budget charge when the owner's memory goes away without
 * frame_reader_release (an attempt abandoned by an error or a reset).
 */
static void
frame_reader_context_gone(void *arg)
{
	FrameReader *r = (FrameReader *) arg;

	http_client_uncharge(r->capacity);
	r->capacity = 0;
	r->data = NULL;
	r->len = 0;
}

void
frame_reader_init(FrameReader *r, MemoryContext cxt,
				  size_t max_message, size_t max_response)
{
	memset(r, 0, sizeof(*r));
	r->cxt = cxt;
	r->max_message = max_message;
	r->max_response = max_response;
	r->refusal = FRAME_READER_OK;
	r->on_reset.func = frame_reader_context_gone;
	r->on_reset.arg = r;
	MemoryContextRegisterResetCallback(cxt, &r->on_reset);
}

static bool
refuse(FrameReader *r, FrameReaderRefusal why, uint32 length, size_t total)
{
	r->refusal = why;
	r->refused_length = length;
	r->refused_total = total;
	r->refused_buffered = http_client_buffered();
	return false;
}

/*
 * Makes room for needed bytes in all.  Grows geometrically for streams of
 * small frames, but falls back to exactly what is needed when doubling
 * would not fit the response limit or the budget.
 */
static bool
reserve(FrameReader *r, size_t needed, uint32 frame_length)
{
	size_t		want;
	char	   *grown = NULL;

	if (needed <= r->capacity)
		return true;

	want = Max(Max(needed, r->capacity * 2), (size_t) FRAME_READER_MIN_CAPACITY);
	want = Min(want, Max(needed, r->max_response));
	if (!http_client_reserve(want - r->capacity))
	{
		want = needed;
		if (http_client_buffered() <= r->capacity + r->other_charge)
			http_client_charge(want - r->capacity);	/* alone: go on */
		else if (!http_client_reserve(want - r->capacity))
			return refuse(r, FRAME_READER_OVER_BUDGET, frame_length, needed);
	}

	if (r->data == NULL)
		grown = MemoryContextAllocExtended(r->cxt, want,
										   MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	else
	{
		/*
		 * repalloc has no variant that returns NULL on failure; catch its
		 * error here rather than let it unwind through libcurl.  Large
		 * chunks are grown with realloc(), which can move the pages instead
		 * of copying them.
		 */
		MemoryContext old = CurrentMemoryContext;

		PG_TRY();
		{
			grown = repalloc_huge(r->data, want);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(old);
			FlushErrorState();
			grown = NULL;
		}
		PG_END_TRY();
	}
	if (grown == NULL)
	{
		http_client_uncharge(want - r->capacity);
		return refuse(r, FRAME_READER_OUT_OF_MEMORY, frame_length, needed);
	}
	r->data = grown;
	r->capacity = want;
	return true;
}

/* Takes n bytes the caller has made room for. */
static inline void
take(FrameReader *r, const char *data, size_t n)
{
	memcpy(r->data + r->len, data, n);
	r->len += n;
}

/* Records the frame at complete_offset as whole. */
static void
frame_complete(FrameReader *r, uint16 type, uint32 length)
{
	r->complete_offset += PROTOCOL_FRAME_HEADER_SIZE + (size_t) length;
	r->complete_frames++;
	if (type == MSG_END || type == MSG_SUSPENSION || type == MSG_ERROR)
		r->terminal = true;
}

bool
frame_reader_feed(FrameReader *r, const char *data, size_t n)
{
	if (r->refusal != FRAME_READER_OK)
		return false;

	while (n > 0)
	{
		size_t		have = r->len - r->complete_offset;
		uint16		type;
		uint16		flags;
		uint32		length;
		size_t		frame_end;
		size_t		chunk;

		if (have < PROTOCOL_FRAME_HEADER_SIZE)
		{
			/* Complete the header of the next frame first. */
			chunk = Min(n, PROTOCOL_FRAME_HEADER_SIZE - have);
			if (!reserve(r, r->len + chunk, 0))
				return false;
			take(r, data, chunk);
			data += chunk;
			n -= chunk;
			if (r->len - r->complete_offset < PROTOCOL_FRAME_HEADER_SIZE)
				break;

			/* The header is whole: check what it announces. */
			frame_header_read((const uint8 *) r->data + r->complete_offset,
							  &type, &flags, &length);
			frame_end = r->complete_offset + PROTOCOL_FRAME_HEADER_SIZE + (size_t) length;
			if ((size_t) length > r->max_message)
				return refuse(r, FRAME_READER_FRAME_TOO_LARGE, length, frame_end);
			if (frame_end > r->max_response)
				return refuse(r, FRAME_READER_RESPONSE_TOO_LARGE, length, frame_end);
			if (!reserve(r, frame_end, length))
				return false;
			if (length == 0)
				frame_complete(r, type, length);
			continue;
		}

		/* Inside a frame whose room is reserved. */
		frame_header_read((const uint8 *) r->data + r->complete_offset,
						  &type, &flags, &length);
		frame_end = r->complete_offset + PROTOCOL_FRAME_HEADER_SIZE + (size_t) length;
		chunk = Min(n, frame_end - r->len);
		take(r, data, chunk);
		data += chunk;
		n -= chunk;
		if (r->len == frame_end)
			frame_complete(r, type, length);
	}
	return true;
}

size_t
frame_reader_sink(void *reader, const char *data, size_t len)
{
	return frame_reader_feed((FrameReader *) reader, data, len) ? len : 0;
}

void
frame_reader_discard(FrameReader *r, size_t n)
{
	Assert(n <= r->complete_offset);
	if (n == 0)
		return;
	memmove(r->data, r->data + n, r->len - n);
	r->len -= n;
	r->complete_offset -= n;
}

void
frame_reader_release(FrameReader *r)
{
	if (r->data != NULL)
		pfree(r->data);
	http_client_uncharge(r->capacity);
	r->data = NULL;
	r->capacity = 0;
	r->len = 0;
}

char *
frame_reader_refusal_message(const FrameReader *r)
{
	switch (r->refusal)
	{
		case FRAME_READER_OK:
			break;
		case FRAME_READER_FRAME_TOO_LARGE:
			return psprintf("service sent a message of %u bytes, more than durable.max_message_size (%zu bytes)",
							r->refused_length, r->max_message);
		case FRAME_READER_RESPONSE_TOO_LARGE:
			return psprintf("service sent a response of at least %zu bytes, more than durable.max_response_size (%zu bytes)",
							r->refused_total, r->max_response);
		case FRAME_READER_OVER_BUDGET:
			return psprintf("dispatcher memory budget exhausted: buffering %zu bytes of this response would exceed durable.dispatcher_memory_budget (%zu of %zu bytes in use)",
							r->refused_total, r->refused_buffered,
							http_client_budget());
		case FRAME_READER_OUT_OF_MEMORY:
			return psprintf("out of memory buffering a response of %zu bytes",
							r->refused_total);
	}
	return pstrdup("no refusal");
}
