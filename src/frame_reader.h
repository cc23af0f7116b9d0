/*-------------------------------------------------------------------------
 *
 * frame_reader.h
 *	  Buffers a service's response stream frame by frame, refusing what
 *	  would exceed the limits before it is buffered.
 *
 * IDENTIFICATION
 *	  src/frame_reader.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DURABLE_FRAME_READER_H
#define DURABLE_FRAME_READER_H

#include "postgres.h"

#include "utils/palloc.h"

/* Why a reader stopped accepting bytes. */
typedef enum FrameReaderRefusal
{
	FRAME_READER_OK,
	FRAME_READER_FRAME_TOO_LARGE,	/* one frame over max_message */
	FRAME_READER_RESPONSE_TOO_LARGE,	/* the response over max_response */
	FRAME_READER_OVER_BUDGET,	/* the dispatcher's memory budget is spent */
	FRAME_READER_OUT_OF_MEMORY
} FrameReaderRefusal;

typedef struct FrameReader
{
	MemoryContext cxt;			/* where the buffer lives */

	/* Bytes received so far; data[0 .. len) */
	char	   *data;
	size_t		len;
	size_t		capacity;		/* allocated, and charged to the budget */

	/* Frames in data[0 .. complete_offset) are whole. */
	size_t		complete_offset;
	int			complete_frames;	/* since the start, discarded ones too */
	bool		terminal;		/* a whole End, Suspension or Error arrived */

	/*
	 * Bytes charged to the budget elsewhere on this response's behalf (the
	 * request body), set by the owner.  A reader may always grow while it
	 * and they are all the dispatcher holds, so that an attempt larger than
	 * the budget still makes progress on its own.
	 */
	size_t		other_charge;

	/* Limits, and the first one that was hit */
	size_t		max_message;
	size_t		max_response;
	FrameReaderRefusal refusal;
	uint32		refused_length; /* announced length of the refused frame */
	size_t		refused_total;	/* response size the refused frame implied */
	size_t		refused_buffered;	/* dispatcher's buffered bytes then */

	MemoryContextCallback on_reset; /* returns the budget if cxt goes */
} FrameReader;

/*
 * Prepares a reader whose buffer lives in cxt.  Its memory is returned to
 * the dispatcher's budget by frame_reader_release, or at the latest when
 * cxt is reset or deleted.
 */
extern void frame_reader_init(FrameReader *r, MemoryContext cxt,
							  size_t max_message, size_t max_response);

/*
 * Takes the next bytes of the stream.  Returns false, with r->refusal set,
 * if they were refused; a refused reader takes nothing more.  Never raises
 * an error, so that it may run inside a libcurl callback.
 */
extern bool frame_reader_feed(FrameReader *r, const char *data, size_t len);

/*
 * Drops the first n bytes, which must be whole frames already decoded: a
 * streaming response keeps only what is not decoded yet, so its limits
 * apply to what is buffered at once.
 */
extern void frame_reader_discard(FrameReader *r, size_t n);

/* Frees the buffer and gives its memory back to the budget. */
extern void frame_reader_release(FrameReader *r);

/* A human-readable reason for a refusal, for last_failure. */
extern char *frame_reader_refusal_message(const FrameReader *r);

/*
 * HttpSink adapter: feeds the reader, and returns what libcurl's write
 * callback must return (a short count aborts the transfer).
 */
extern size_t frame_reader_sink(void *reader, const char *data, size_t len);

#endif							/* DURABLE_FRAME_READER_H */
