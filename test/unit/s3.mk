# The S3 client's unit test (no PostgreSQL): `make -f test/unit/s3.mk` builds
# test/unit/bin/s3_test; test/unit/s3_run.sh starts a private MinIO and runs it.
CC ?= cc
CFLAGS = -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers -I$(HERE)../../src $(shell xml2-config --cflags)
LDLIBS = -lcurl -lxml2 -lz -lcrypto -ljansson -lpthread

HERE := $(dir $(lastword $(MAKEFILE_LIST)))
PROGRAMS = $(HERE)bin/s3_test $(HERE)bin/s3_tool $(HERE)bin/eventjson_test

all: $(PROGRAMS)

$(HERE)bin/s3_test: $(HERE)s3_test.c $(HERE)../../src/s3.c $(HERE)../../src/s3.h
	mkdir -p $(HERE)bin
	$(CC) $(CFLAGS) -o $@ $(HERE)s3_test.c $(HERE)../../src/s3.c $(LDLIBS)

clean:
	rm -f $(PROGRAMS)

.PHONY: all clean

$(HERE)bin/s3_tool: $(HERE)s3_tool.c $(HERE)../../src/s3.c $(HERE)../../src/s3.h
	mkdir -p $(HERE)bin
	$(CC) $(CFLAGS) -o $@ $(HERE)s3_tool.c $(HERE)../../src/s3.c $(LDLIBS)

# The event validator's test (jansson, no S3).
$(HERE)bin/eventjson_test: $(HERE)eventjson_test.c $(HERE)../../src/eventjson.c $(HERE)../../src/eventjson.h
	mkdir -p $(HERE)bin
	$(CC) $(CFLAGS) -o $@ $(HERE)eventjson_test.c $(HERE)../../src/eventjson.c -ljansson -lm
