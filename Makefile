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

# Tests, the PGXS way (the extension must be installed first):
#   make installcheck        pg_regress suite (test/regress), then the TAP
#                            suite (test/t), each on temporary clusters
#   make prove_installcheck  only the TAP suite; PROVE_TESTS='test/t/020_retries.pl'
#                            picks files, PROVE_FLAGS='--verbose' adds prove flags
# Both start the Restate test service themselves (Node 22 from
# scripts/install-node, or DURABLE_NODE).  The pg_regress suite needs
# durable preloaded, so it runs on a --temp-instance with
# test/regress/durable.conf, not on a running server; the TAP tests make
# their own clusters.  "make test" (test/run) installs and runs everything.
REGRESS = $(sort $(basename $(notdir $(wildcard test/regress/sql/*.sql))))
REGRESS_OPTS = --inputdir=test/regress --temp-instance=tmp_check \
	--temp-config=test/regress/durable.conf --port=28434
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

# CI adds -Werror: "make COPT=-Werror" (COPT is PostgreSQL's hook for extra
# compiler flags).

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# pg_regress runs under a wrapper that starts the test service first and
# stops it afterwards; TAP scripts find DurableTest.pm in test/t, the
# repository and Node through the environment.
durable_pg_regress := $(top_builddir)/src/test/regress/pg_regress
durable_installcheck := $(subst $(durable_pg_regress) ,$(CURDIR)/test/regress/with-service $(durable_pg_regress) ,$(pg_regress_installcheck))
ifeq ($(durable_installcheck),$(pg_regress_installcheck))
$(error could not put test/regress/with-service in front of pg_regress: PGXS changed its pg_regress_installcheck)
endif
pg_regress_installcheck := $(durable_installcheck)
PG_PROVE_FLAGS += -I $(CURDIR)/test/t
export DURABLE_REPO ?= $(CURDIR)
prove_installcheck: export DURABLE_NODE ?= $(shell $(CURDIR)/scripts/install-node | tail -n 1)
installcheck: export DURABLE_NODE ?= $(shell $(CURDIR)/scripts/install-node | tail -n 1)

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
