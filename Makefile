# recsys: PGXS build. `make && sudo make install`, then `make installcheck` against a
# server that preloads recsys (test/stack.sh starts one).

MODULE_big = recsys
OBJS = src/recsys.o src/guc.o src/secrets.o src/libutil.o src/health.o src/redis.o src/http.o src/llm.o src/kafka.o src/s3.o src/ingest.o src/archiver.o src/archive_store.o src/eventjson.o src/archive_watermarks.o src/csvreader.o src/ingest_event.o src/ingest_worker.o src/outbox.o src/bulkcopy.o src/ratings_merge.o src/aggregate.o src/aggregate_read.o src/aggregate_ratings.o src/profiles.o src/neighbors.o src/neighbors_kernel.o src/schedule.o src/recommend.o src/rank.o src/cache.o src/archive_dedup.o

EXTENSION = recsys
EXTVERSION = $(shell sed -n "s/^default_version = '\\(.*\\)'/\\1/p" recsys.control)
# The current version's install script is built from sql/install/ (below); every
# released version's script is frozen as it shipped, beside the upgrade scripts
# recsys--A--B.sql, so that an upgrade test installs exactly what users have.
DATA_built = sql/recsys--$(EXTVERSION).sql
DATA = $(filter-out sql/recsys--$(EXTVERSION).sql,$(wildcard sql/recsys--*.sql))

REGRESS = install settings health secrets ingest hardening aggregate
REGRESS_OPTS = --load-extension=recsys

PG_CONFIG ?= pg_config

PG_CPPFLAGS = -I$(srcdir)/src $(shell xml2-config --cflags 2>/dev/null || echo -I/usr/include/libxml2)
# Our own code builds warning-free; the few -Wno- flags silence what PostgreSQL's own
# headers trip under -Wextra.
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers -Wno-cast-function-type
SHLIB_LINK = -lcsv -ljansson -lxml2 -lz -lcurl -lcrypto -lrdkafka -lhiredis -lpthread

EXTRA_CLEAN = sql/recsys--$(EXTVERSION).sql

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: rebuild every object when a header changes.
$(OBJS): $(wildcard src/*.h)

# The install script is built from one file per concern, in name order.
sql/recsys--$(EXTVERSION).sql: $(sort $(wildcard sql/install/*.sql)) recsys.control
	cat $(filter %.sql,$^) > $@


# The full suite: pg_regress and the integration tests against test/stack.sh.
.PHONY: test
test:
	test/run.sh
