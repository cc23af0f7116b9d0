# Makefile for the durable PostgreSQL extension (PGXS)

EXTENSION = durable
MODULE_big = durable
DATA = $(wildcard sql/durable--*.sql)

PROTO_C = src/protocol.pb-c.c
SRCS = $(filter-out $(PROTO_C),$(wildcard src/*.c)) $(PROTO_C)
OBJS = $(SRCS:.c=.o)

PG_CPPFLAGS = -Isrc $(shell curl-config --cflags)
# -Wextra, minus two checks that only flag PostgreSQL idioms: callbacks with
# unused parameters and partially initialised structs ({0}, designated).
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK = $(shell curl-config --libs) -lprotobuf-c
EXTRA_CLEAN = src/protocol.pb-c.c src/protocol.pb-c.h

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The protobuf-c code for our own copy of the protocol messages is generated
# at build time, never committed.
src/protocol.pb-c.c src/protocol.pb-c.h: src/protocol.proto
	protoc-c --proto_path=src --c_out=src src/protocol.proto

$(filter-out $(PROTO_C:.c=.o),$(OBJS)): src/protocol.pb-c.h

# PGXS tracks no header dependencies: rebuild everything when a header
# changes, so that no object keeps an old struct layout.
$(OBJS): $(filter-out $(PROTO_C:.c=.h),$(wildcard src/*.h))

.PHONY: test demo deps
deps:
	scripts/install-deps

test:
	test/run

demo:
	examples/demo
