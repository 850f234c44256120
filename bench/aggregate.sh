#!/usr/bin/env bash
# bench/aggregate.sh: recsys_aggregate (full, incremental, rebuild) against COPY.
#
#   test/stack.sh up && eval "$(test/stack.sh env)"    # a stack of your own
#   bench/aggregate.sh [ROWS ...]                       # default: 1000000 25000000
#
# For each size, bench/gen_movielens (the project's own deterministic generator, with
# MovieLens 25M's shape; see its header) writes movies.csv, ratings.csv (ROWS ratings)
# and increment.csv (1 % more: new ratings by existing users in proportion to their
# activity, and a few new users) into $BENCH_DIR/movielens-ROWS, readable by the
# server's OS user, kept for the next run while the generator and seed are unchanged.
# Then, on a fresh stack, in one run:
#   1. SELECT recsys_load_movies(movies.csv); SELECT * FROM recsys_ingest_csv(ratings.csv);
#      SELECT recsys_archive_sync('30 min')   (timed, for the record);
#   2. COPY ratings.csv into an UNLOGGED table: the baseline, on the quiet machine;
#   3. SELECT * FROM recsys_aggregate(): the full aggregate of the archive (ratings,
#      profiles, movie statistics, item neighbours), timed, while the memory of the
#      process whose pg_stat_activity.backend_type is 'recsys aggregate' is sampled
#      from /proc (VmHWM: the kernel's peak resident size, shared buffers it touched
#      included; RssAnon: its private memory, peak of samples every 0.1 s);
#   4. recsys_ingest_csv(increment.csv), archive sync, then the incremental
#      SELECT * FROM recsys_aggregate(), timed and sampled the same way (VmHWM is a
#      process's lifetime peak: if one worker served several calls, RssAnon tells);
#   5. at sizes up to $BENCH_REBUILD_MAX (default 1000000) only:
#      SELECT * FROM recsys_aggregate(rebuild => true), timed and sampled;
# and print one line per size, then a markdown table for BENCHMARKS.md with each
# aggregate's seconds over COPY's seconds.  On stderr: the data set's shape, each
# step's detail (the function's own result row, the calling session's RssAnon too),
# and warnings when a count is off (events read by each aggregate against the files'
# rows; recsys.ratings against base + increment, every rating being a new user-movie
# pair).  recsys.aggregate_progress is logged every second to
# $BENCH_DIR/movielens-ROWS/progress-{full,incremental,rebuild}.log.  Without
# recsys_aggregate() installed, every other step still runs and is timed.
#
# A clean database per size: the archive (MinIO objects, Kafka topic, manifest) must be
# empty too, so before each size the script STOPS THE STACK OF $RECSYS_STACK_DIR,
# DELETES THAT DIRECTORY and starts a new stack there (test/stack.sh down; rm -rf;
# up), then evaluates `test/stack.sh env` again.  It refuses a RECSYS_STACK_DIR that is
# not a stack's directory.  BENCH_RESET=0 keeps the stack as it is (one size on a
# stack you just made; the figures then include whatever it held).  The last size's
# stack is left running, its data in place.
# Run as root (or as the server's OS user) so /proc of the server's processes is
# readable.  Tunables: BENCH_DIR (/tmp/recsys-bench), BENCH_SEED (1), BENCH_REBUILD_MAX,
# BENCH_WORKER_TYPE (the backend_type sampled; 'recsys aggregate'), BENCH_SETTLE (seconds
# of rest after a fresh stack starts; 10).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/recsys-bench}
SEED=${BENCH_SEED:-1}
REBUILD_MAX=${BENCH_REBUILD_MAX:-1000000}
RESET=${BENCH_RESET:-1}
SETTLE=${BENCH_SETTLE:-10}
WORKER_TYPE=${BENCH_WORKER_TYPE:-recsys aggregate}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000000 25000000)
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -tA)
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

die() { echo "bench: error: $*" >&2; exit 1; }
warn() { echo "bench: warning: $*" >&2; }
now() { date +%s.%N; }

[ -n "${RECSYS_STACK_DIR:-}" ] && [ -n "${PGHOST:-}" ] ||
    die 'no stack in the environment: run eval "$(test/stack.sh env)" first'
if [ "$RESET" = 1 ] && [ ! -f "$RECSYS_STACK_DIR/pg/data/PG_VERSION" ]; then
    die "$RECSYS_STACK_DIR does not hold a stack (no pg/data/PG_VERSION): not wiping it"
fi

mkdir -p "$BENCH_DIR"
chmod 755 "$BENCH_DIR"
cc -O2 -o "$BENCH_DIR/gen_movielens" "$HERE/gen_movielens.c" -lm
gen_id=$(sha1sum "$HERE/gen_movielens.c" | cut -c1-12)

# generate N DIR: the data set for N ratings in DIR, unless DIR holds this generator's.
generate() {
    local n=$1 dir=$2 stamp="gen_movielens.c $gen_id --ratings $1 --seed $SEED"
    if [ "$(cat "$dir/stamp" 2>/dev/null)" != "$stamp" ]; then
        mkdir -p "$dir"
        chmod 755 "$dir"
        rm -f "$dir/stamp"
        "$BENCH_DIR/gen_movielens" --ratings "$n" --seed "$SEED" --out "$dir" 2>"$dir/shape.txt" ||
            { cat "$dir/shape.txt" >&2; die "gen_movielens failed"; }
        echo "$stamp" >"$dir/stamp"
    fi
    chmod 644 "$dir"/*.csv
    sed 's/^/  /' "$dir/shape.txt"
}

source "$HERE/lib.sh"

# sample_memory OUTFILE PROGRESSLOG: follow the aggregating worker(s) and the timed
# session (application_name bench-aggregate), keep their peaks (kB) until killed, and
# log recsys.aggregate_progress once a second.
sample_memory() {
    local out=$1 progress=$2 i=0 pids="" seen=0
    local whwm=0 wanon=0 chwm=0 canon=0
    trap 'echo "$whwm $wanon $chwm $canon $seen" > "$out"; exit 0' TERM
    while :; do
        if [ -z "$pids" ] || [ $((i % 10)) -eq 0 ]; then
            pids=$("${PSQL[@]}" -c "SELECT pid || ':' || (backend_type = '$WORKER_TYPE')::int
                FROM pg_stat_activity WHERE pid <> pg_backend_pid()
                AND (backend_type = '$WORKER_TYPE' OR application_name = 'bench-aggregate')" 2>/dev/null || true)
            if [ $((i % 10)) -eq 0 ] && [ "$has_progress" = t ]; then
                "${PSQL[@]}" -F ' | ' -c "SELECT to_char(clock_timestamp(), 'HH24:MI:SS.MS'), * FROM recsys.aggregate_progress" \
                    >>"$progress" 2>/dev/null || true
            fi
        fi
        local p pid worker h a key val
        for p in $pids; do
            pid=${p%%:*} worker=${p##*:}
            h=0 a=0
            # read in the shell itself: no process forked per sample
            while read -r key val _; do
                case $key in
                    VmHWM:) h=$val ;;
                    RssAnon:) a=$val ;;
                esac
            done 2>/dev/null <"/proc/$pid/status" || continue
            if [ "$worker" = 1 ]; then
                seen=1
                [ "$h" -gt "$whwm" ] && whwm=$h
                [ "$a" -gt "$wanon" ] && wanon=$a
            else
                [ "$h" -gt "$chwm" ] && chwm=$h
                [ "$a" -gt "$canon" ] && canon=$a
            fi
        done
        i=$((i + 1))
        sleep 0.1
    done
}

sampler=""
# stop_sampler: stop the memory sampler, if one runs (also on exit).
stop_sampler() {
    if [ -n "$sampler" ]; then
        kill -TERM "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        sampler=""
    fi
}
trap stop_sampler EXIT

# aggregate NAME ARGS: time SELECT * FROM recsys_aggregate(ARGS) with the sampler; set
# agg_s (wall seconds), agg_res (objects events users movies seconds) and agg_mem.
aggregate() {
    local name=$1 args=$2 memfile t0 t1
    memfile=$(mktemp)
    : >"$dir/progress-$name.log"
    sample_memory "$memfile" "$dir/progress-$name.log" &
    sampler=$!
    t0=$(now)
    if ! agg_res=$(PGAPPNAME=bench-aggregate "${PSQL[@]}" -F ' ' \
        -c "SELECT objects, events, users, movies, round(seconds::numeric, 3) FROM recsys_aggregate($args)"); then
        stop_sampler
        die "SELECT * FROM recsys_aggregate($args) failed"
    fi
    t1=$(now)
    stop_sampler
    agg_mem=$(cat "$memfile")
    rm -f "$memfile"
    agg_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    set -- $agg_mem
    [ "$5" = 1 ] || warn "$name: no process with backend_type '$WORKER_TYPE' was seen"
    echo "  $name aggregate: ${agg_s} s (objects events users movies seconds: $agg_res);" \
        "worker peak VmHWM $(($1 / 1024)) MB, RssAnon $(($2 / 1024)) MB; caller RssAnon $(($4 / 1024)) MB"
}

# timed SQL: run SQL, print nothing, set secs to the wall seconds it took.
timed() {
    local t0 t1
    t0=$(now)
    out=$("${PSQL[@]}" -c "$1")
    t1=$(now)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
}

commas() { echo "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
mb() { [ "$seen_any" = 1 ] && awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }' || echo -; }
ratio() { [ "$1" = - ] && echo - || awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

rows_md=()
printf '%-10s %8s %7s %8s %7s %8s %9s %6s %8s %7s %6s %9s %6s %9s %10s\n' \
    rows users ingest_s archive_s copy_s full_s full/copy inc_ev inc_in_s inc_s inc/c rebuild_s reb/c VmHWM_MB RssAnon_MB
for n in "${SIZES[@]}"; do
    dir="$BENCH_DIR/movielens-$n"
    echo "size $n: generating into $dir" >&2
    generate "$n" "$dir" >&2
    k=$(($(wc -l <"$dir/increment.csv") - 1))
    if [ "$RESET" = 1 ]; then
        echo "size $n: a fresh stack in $RECSYS_STACK_DIR" >&2
        fresh_stack
    fi
    has_agg=$("${PSQL[@]}" -c "SELECT to_regprocedure('recsys_aggregate(boolean)') IS NOT NULL")
    has_progress=$("${PSQL[@]}" -c "SELECT to_regclass('recsys.aggregate_progress') IS NOT NULL")
    [ "$has_agg" = t ] || warn "recsys_aggregate(boolean) is not installed: timing everything else"
    cat "$dir"/*.csv >/dev/null # page cache warm for every contender

    "${PSQL[@]}" -c "SELECT recsys_load_movies('$dir/movies.csv')" >/dev/null
    timed "SELECT events || ' ' || rejected FROM recsys_ingest_csv('$dir/ratings.csv')"
    ingest_s=$secs
    [ "$out" = "$n 0" ] || warn "ingest of $n rows: events, rejected = $out"
    timed "SELECT recsys_archive_sync('30 min')"
    archive_s=$secs
    echo "  ingest ${ingest_s} s, archive sync ${archive_s} s after it" >&2

    "${PSQL[@]}" -c "DROP TABLE IF EXISTS bench_copy" \
        -c "CREATE UNLOGGED TABLE bench_copy (user_id bigint, movie_id bigint, rating real, ts bigint)"
    timed "COPY bench_copy FROM '$dir/ratings.csv' WITH (FORMAT csv, HEADER true)"
    copy_s=$secs
    "${PSQL[@]}" -c "DROP TABLE bench_copy"
    echo "  COPY ${copy_s} s" >&2

    full_s=- inc_s=- rebuild_s=- hwm=0 anon=0 seen_any=0
    if [ "$has_agg" = t ]; then
        aggregate full "" >&2
        full_s=$agg_s
        read -r _ ev _ _ _ <<<"$agg_res"
        [ "$ev" = "$n" ] || warn "full aggregate read $ev events of $n"
        read -r hwm anon _ _ seen_any <<<"$agg_mem"
    fi

    timed "SELECT events || ' ' || rejected FROM recsys_ingest_csv('$dir/increment.csv')"
    inc_in_s=$secs
    [ "$out" = "$k 0" ] || warn "ingest of the increment ($k rows): events, rejected = $out"
    "${PSQL[@]}" -c "SELECT recsys_archive_sync('30 min')" >/dev/null
    if [ "$has_agg" = t ]; then
        aggregate incremental "" >&2
        inc_s=$agg_s
        read -r _ ev _ _ _ <<<"$agg_res"
        [ "$ev" = "$k" ] || warn "incremental aggregate read $ev events of $k"
        read -r h a _ _ s <<<"$agg_mem"
        [ "$s" = 1 ] && seen_any=1
        [ "$h" -gt "$hwm" ] && hwm=$h
        [ "$a" -gt "$anon" ] && anon=$a
        if [ "$n" -le "$REBUILD_MAX" ]; then
            aggregate rebuild "rebuild => true" >&2
            rebuild_s=$agg_s
            read -r h a _ _ s <<<"$agg_mem"
            [ "$s" = 1 ] && seen_any=1
            [ "$h" -gt "$hwm" ] && hwm=$h
            [ "$a" -gt "$anon" ] && anon=$a
        fi
        # every event is a distinct (user, movie): the ratings table holds them all
        got=$("${PSQL[@]}" -c "SELECT count(*) FROM recsys.ratings")
        nb='?'
        [ "$("${PSQL[@]}" -c "SELECT to_regclass('recsys.item_neighbors') IS NOT NULL")" = t ] &&
            nb=$("${PSQL[@]}" -c "SELECT count(*) FROM recsys.item_neighbors")
        [ "$got" = "$((n + k))" ] || warn "recsys.ratings holds $got rows, not $((n + k))"
        echo "  recsys.ratings $got rows, recsys.item_neighbors $nb rows" >&2
    fi
    users=$(sed -n 's/.*: \([0-9]*\) users,.*/\1/p' "$dir/shape.txt")

    printf '%-10d %8d %7.2f %8.2f %7.2f %8s %9s %6d %8.2f %7s %6s %9s %6s %9s %10s\n' \
        "$n" "$users" "$ingest_s" "$archive_s" "$copy_s" "$full_s" "$(ratio "$full_s" "$copy_s")" \
        "$k" "$inc_in_s" "$inc_s" "$(ratio "$inc_s" "$copy_s")" "$rebuild_s" "$(ratio "$rebuild_s" "$copy_s")" \
        "$(mb "$hwm")" "$(mb "$anon")"
    rows_md+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' \
        "$(commas "$n")" "$(commas "$users")" "$copy_s" "$full_s" "$(ratio "$full_s" "$copy_s")" \
        "$(commas "$k")" "$inc_s" "$(ratio "$inc_s" "$copy_s")" "$rebuild_s" "$(ratio "$rebuild_s" "$copy_s")" \
        "$(mb "$hwm")" "$(mb "$anon")")")
done

echo
fresh="each size on a fresh stack"
[ "$RESET" = 1 ] || fresh="BENCH_RESET=0: on the stack as it was"
echo "Run of $(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) CPUs, seed $SEED ($fresh); ratios: seconds over COPY's seconds for ratings.csv:"
echo
echo "| ratings | users | COPY s | full aggregate s | ratio to COPY | increment events | incremental s | ratio to COPY | rebuild s | ratio to COPY | worker peak VmHWM MB | worker peak RssAnon MB |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows_md[@]}"
echo
echo "Targets (2 cores): full at 25M under 120 s; the 1 % incremental run under 10 s; worker peak memory under 4 GB."
