#!/usr/bin/env bash
# Unit tests of the library wrappers (no PostgreSQL inside): the CSV reader, the
# neighbour kernel, the aggregate's reduction, the row validator and the event parser
# under valgrind (any error or definite leak fails), their fuzzing corpus under
# AddressSanitizer,
# the S3 client against the stack's MinIO, the Kafka client against the stack's broker,
# the LLM client against the stack's LLM test server (under valgrind without the two
# checks that wait on a slow server, then all of them without valgrind).
# Each program prints TAP; its lines are counted here, prefixed with its name.
source "$(dirname "$0")/../lib.sh"
TOOLS=${RECSYS_TOOLS_DIR:-/opt/recsys-tools}
BIN="$REPO_DIR/test/unit/bin"

make -s -f "$REPO_DIR/test/unit/unit.mk" >/dev/null 2>&1
ok $? "the unit tests build with -Wall -Wextra -Werror" || { done_testing; exit 1; }

# unit NAME CMD...: run a TAP program, report each of its results, then its exit status.
unit() {
    local name=$1; shift
    local out rc line n=0
    out=$("$@" 2>&1)
    rc=$?
    while IFS= read -r line; do
        case "$line" in
            "ok "*) ok 0 "$name: ${line#ok * - }"; n=$((n + 1)) ;;
            "not ok "*) ok 1 "$name: ${line#not ok * - }"; n=$((n + 1)) ;;
            "#"*) echo "$line" ;;
        esac
    done <<<"$out"
    [ "$rc" -eq 0 ] && [ "$n" -gt 0 ]
    ok $? "$name: exits 0 after $n checks" || diag "$(tail -n 20 <<<"$out")"
}

VG=(valgrind --quiet --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite)
unit csvreader "${VG[@]}" "$BIN/csv_test"
unit neighbors "${VG[@]}" "$BIN/neighbors_test"
unit ratings_merge "${VG[@]}" "$BIN/merge_test"
unit ingest_event "${VG[@]}" "$BIN/event_test"
unit eventjson "${VG[@]}" "$BIN/eventjson_test"

# The fuzzing corpus (bench/fuzz/corpus/), replayed under AddressSanitizer and UBSan:
# every input the fuzzers kept (and every crash once fixed) runs on each change.
make -s -C "$REPO_DIR/bench/fuzz" replay >/dev/null 2>&1
ok $? "the fuzz targets build with ASan and UBSan" || diag "$(make -C "$REPO_DIR/bench/fuzz" replay 2>&1 | tail -n 5)"
for t in csv row event; do
    out=$(ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$REPO_DIR/bench/fuzz/bin/${t}_replay" "$REPO_DIR/bench/fuzz/corpus/$t" 2>&1)
    rc=$?
    n=$(ls "$REPO_DIR/bench/fuzz/corpus/$t" | wc -l)
    [ "$rc" -eq 0 ] && [ "$n" -gt 0 ] && grep -q "^$n inputs replayed" <<<"$out"
    ok $? "fuzz corpus $t: $n inputs replayed under ASan/UBSan without a report" || diag "$(tail -n 20 <<<"$out")"
done

S3_BUCKET=recsys-unit unit s3 "$BIN/s3_test"

java -Xms64m -Xmx256m -cp "$TOOLS/kafka/libs/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$KAFKA_BROKERS" --create --if-not-exists --topic recsys-unit \
    --partitions 3 --replication-factor 1 >/dev/null 2>&1
unit kafka "$BIN/kafka_test" "$KAFKA_BROKERS" recsys-unit

unit llm "${VG[@]}" "$BIN/llm_test" --no-slow
unit llm-slow "$BIN/llm_test"

done_testing
