# Unit tests of the library wrappers, which include no PostgreSQL header:
# `make -f test/unit/unit.mk` builds them into test/unit/bin/. test/t/010-unit.t runs
# them (the parsers under valgrind, the clients against the stack's servers);
# test/unit/s3_run.sh runs the S3 test against a private MinIO.
CC ?= cc
CFLAGS = -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers -I$(HERE)../../src $(shell xml2-config --cflags)
LDLIBS = -lcurl -lxml2 -lz -lcrypto -ljansson -lpthread

HERE := $(dir $(lastword $(MAKEFILE_LIST)))
PROGRAMS = $(HERE)bin/s3_test $(HERE)bin/s3_tool $(HERE)bin/eventjson_test \
	$(HERE)bin/csv_test $(HERE)bin/event_test $(HERE)bin/kafka_test \
	$(HERE)bin/neighbors_test $(HERE)bin/merge_test $(HERE)bin/llm_test

all: $(PROGRAMS)

$(HERE)bin/s3_test: $(HERE)s3_test.c $(HERE)../../src/s3.c $(HERE)../../src/s3.h $(HERE)../../src/libutil.c
	mkdir -p $(HERE)bin
	$(CC) $(CFLAGS) -o $@ $(HERE)s3_test.c $(HERE)../../src/s3.c $(HERE)../../src/libutil.c $(LDLIBS)

clean:
	rm -f $(PROGRAMS)

.PHONY: all clean

$(HERE)bin/s3_tool: $(HERE)s3_tool.c $(HERE)../../src/s3.c $(HERE)../../src/s3.h $(HERE)../../src/libutil.c
	mkdir -p $(HERE)bin
	$(CC) $(CFLAGS) -o $@ $(HERE)s3_tool.c $(HERE)../../src/s3.c $(HERE)../../src/libutil.c $(LDLIBS)

# The event validator's test (jansson, no S3).
$(HERE)bin/eventjson_test: $(HERE)eventjson_test.c $(HERE)../../src/eventjson.c $(HERE)../../src/eventjson.h
	mkdir -p $(HERE)bin
	$(CC) $(CFLAGS) -o $@ $(HERE)eventjson_test.c $(HERE)../../src/eventjson.c -ljansson -lm

# The CSV reader (libcsv) and the ratings-row validator.
$(HERE)bin/csv_test: $(HERE)tap.h $(HERE)csv_test.c $(HERE)../../src/csvreader.c $(HERE)../../src/csvreader.h $(HERE)../../src/libutil.c
	mkdir -p $(HERE)bin
	$(CC) $(CFLAGS) -o $@ $(HERE)csv_test.c $(HERE)../../src/csvreader.c $(HERE)../../src/libutil.c -lcsv -lpthread

$(HERE)bin/event_test: $(HERE)tap.h $(HERE)event_test.c $(HERE)../../src/ingest_event.c $(HERE)../../src/ingest_event.h
	mkdir -p $(HERE)bin
	$(CC) $(CFLAGS) -o $@ $(HERE)event_test.c $(HERE)../../src/ingest_event.c -lm

# The Kafka client, against a real broker.
$(HERE)bin/kafka_test: $(HERE)tap.h $(HERE)kafka_test.c $(HERE)../../src/kafka.c $(HERE)../../src/kafka.h $(HERE)../../src/libutil.c
	mkdir -p $(HERE)bin
	$(CC) $(CFLAGS) -o $@ $(HERE)kafka_test.c $(HERE)../../src/kafka.c $(HERE)../../src/libutil.c -lrdkafka -lpthread

# The item-neighbour kernel of the aggregation stage (plain C and pthreads).
$(HERE)bin/neighbors_test: $(HERE)tap.h $(HERE)neighbors_test.c $(HERE)../../src/neighbors_kernel.c $(HERE)../../src/neighbors_kernel.h $(HERE)../../src/libutil.c
	mkdir -p $(HERE)bin
	$(CC) $(CFLAGS) -o $@ $(HERE)neighbors_test.c $(HERE)../../src/neighbors_kernel.c $(HERE)../../src/libutil.c -lpthread -lm

# The aggregate's reduction: duplicates, latest wins, ties, the radix sort.
$(HERE)bin/merge_test: $(HERE)tap.h $(HERE)merge_test.c $(HERE)../../src/ratings_merge.c $(HERE)../../src/ratings_merge.h
	mkdir -p $(HERE)bin
	$(CC) $(CFLAGS) -o $@ $(HERE)merge_test.c $(HERE)../../src/ratings_merge.c

# The LLM client, against the stack's test server (test/llm_server.py).
$(HERE)bin/llm_test: $(HERE)tap.h $(HERE)llm_test.c $(HERE)../../src/llm.c $(HERE)../../src/llm.h $(HERE)../../src/libutil.c
	mkdir -p $(HERE)bin
	$(CC) $(CFLAGS) -o $@ $(HERE)llm_test.c $(HERE)../../src/llm.c $(HERE)../../src/libutil.c -lcurl -ljansson -lpthread
