#!/usr/bin/env bash
# bench/soak.sh: the scheduled pipeline under steady load, watched for leaks and drift.
#
#   test/stack.sh up && eval "$(test/stack.sh env)"
#   bench/soak.sh [MINUTES]            # default 30; decimals allowed (2.5)
#
# A world of its own on the running stack: a Kafka topic and a MinIO bucket of the
# run's own, a new extension (the stack's database is dropped and created again, as
# the 3xx suites do), a generated catalogue (1000 movies) and 40,000 ingested ratings,
# aggregated once. Then, for MINUTES:
#   - recsys_schedule('* * * * *'): pg_cron aggregates every minute (GMT minutes);
#   - SOAK_RATERS (3) psql clients calling recsys_rate, about 10 a second each;
#   - SOAK_RECOMMENDERS (2) psql clients calling recsys_recommend(u, 10) with the cache
#     on, users drawn mostly from a hot set of 200 (so that hits happen), about 20 a
#     second each;
#   - a 300-row recsys_ingest_csv every SOAK_INGEST_EVERY (60) seconds;
#   - every SOAK_SAMPLE_SECONDS (10): the memory of every recsys background worker
#     (pg_stat_activity backend_type 'recsys ...'; VmRSS and RssAnon from
#     /proc/PID/status, Pss and Pss_Anon from /proc/PID/smaps_rollup), the rows of
#     recsys.outbox and recsys.event_queue, the archive lag (the sum of recsys.status
#     event_log lags), the aggregate lag (recsys.status objects_pending, and the age of
#     the last succeeded run), the cache's hits and misses.
# Checks at the end (after a warm-up of 10 % of the run, at least 30 s and at most
# 120 s; "first" and "last" are the first and last thirds of the rest, by time):
#   - memory flat: for each long-lived worker (archiver, relay) the median RssAnon of
#     the last third is at most SOAK_MEM_BOUND_KB (1024) above that of the first, net,
#     for the archiver, of SOAK_DEDUP_BYTES (128) per id more in its dedup window
#     (recsys.archive_recent_ids: the last 100,000 real-time ids per partition, by
#     design; it fills at the rating rate for hours); the same PID throughout;
#   - outbox bounded: never above SOAK_OUTBOX_MAX (2000) rows, and the last third's
#     median at most 200 above the first's;
#   - archive lag stable: last-third median <= 2 x first-third median + 1000 events;
#   - aggregate lag stable: objects_pending's last-third maximum <= 2 x the first
#     third's + 40 (about one minute of objects); the last succeeded run never older
#     than 150 s after the warm-up;
#   - hit rate stable: the last third's hit rate at least the first's - SOAK_HIT_DROP
#     (0.15; 0.3 for runs under 10 minutes, whose thirds hold one aggregate's
#     invalidations or none);
#   - no errors: no ERROR line from a client, no ERROR/FATAL/PANIC in the server log
#     during the run, no failed aggregate run, every ingest job succeeded;
#   - a succeeded aggregate run started in every whole minute of the run (each pg_cron
#     tick from the first after the schedule to the last at least 30 s before the end).
# Writes RECSYS_SOAK_OUT (default bench/soak-last.json), prints "# figure:" lines and
# one "ok - ..." / "not ok - ..." line per check, appends a JSON line to
# "$RECSYS_STACK_DIR/reliability-figures.jsonl"; exits 1 when a check failed.
# The settings it changes (recsys.kafka_topic, recsys.s3_bucket) are reset at the end
# and the schedule removed; the extension keeps the run's data.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
MINUTES=${1:-30}
DURATION=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
OUT=${RECSYS_SOAK_OUT:-$HERE/soak-last.json}
STACK_DIR=${RECSYS_STACK_DIR:-/var/tmp/recsys-stack}
RATERS=${SOAK_RATERS:-3}
RECOMMENDERS=${SOAK_RECOMMENDERS:-2}
INGEST_EVERY=${SOAK_INGEST_EVERY:-60}
SAMPLE=${SOAK_SAMPLE_SECONDS:-10}
TOOLS=${RECSYS_TOOLS_DIR:-/opt/recsys-tools}
USERS=2000
MOVIES=1000
eval "$("$REPO/test/stack.sh" env)"
TAG=soak-$$-$RANDOM
W=$(mktemp -d /tmp/recsys-soak.XXXXXX)
chmod 0755 "$W"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -tA)
LOG="$STACK_DIR/logs/postgres.log"
S3_TOOL="$REPO/test/unit/bin/s3_tool"
make -s -f "$REPO/test/unit/unit.mk" >/dev/null 2>&1 || true
say() { printf 'soak: %s\n' "$*" >&2; }
CLIENTS=()

cleanup() {
    touch "$W/stop"
    local p
    for p in "${CLIENTS[@]}"; do wait "$p" 2>/dev/null; done
    "${PSQL[@]}" -c "SELECT recsys_unschedule()" >/dev/null 2>&1
    "${PSQL[@]}" -c "ALTER SYSTEM RESET recsys.kafka_topic" -c "ALTER SYSTEM RESET recsys.s3_bucket" \
        -c "SELECT pg_reload_conf()" >/dev/null 2>&1
    [ -x "$S3_TOOL" ] && S3_BUCKET=$TAG "$S3_TOOL" rmall "events/" >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT

on_topic() {
    [ "$("${PSQL[@]}" -c "SELECT count(*) FROM recsys.status WHERE metric LIKE '$TAG/%archived_offset' AND value <> '-1'" 2>/dev/null)" = 3 ]
}
wait_until() {
    local n=$1; shift
    local end=$((SECONDS + n))
    until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.5; done
}

# ---- set-up -------------------------------------------------------------------------
say "topic and bucket $TAG, a new extension"
curl -sS -f -o /dev/null -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" "$S3_ENDPOINT/$TAG" ||
    { say "cannot create bucket $TAG"; exit 2; }
java -Xms64m -Xmx256m -cp "$TOOLS/kafka/libs/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BROKERS" \
    --create --topic "$TAG" --partitions 3 --replication-factor 1 >/dev/null 2>&1 || { say "cannot create topic $TAG"; exit 2; }
# (after a suite that recreated the extension the archiver may first finish re-archiving
# another topic: up to 3 minutes for it to take this one)
"${PSQL[@]}" -c "ALTER SYSTEM SET recsys.kafka_topic = '$TAG'" -c "ALTER SYSTEM SET recsys.s3_bucket = '$TAG'" \
    -c "SELECT pg_reload_conf()" >/dev/null
wait_until 180 on_topic || { say "the archiver did not take topic $TAG"; exit 2; }
"${PSQL[@]}" -c "SET client_min_messages = warning" -c "DROP EXTENSION IF EXISTS pg_cron" -c "DROP EXTENSION recsys CASCADE" \
    -c "CREATE EXTENSION recsys" -c "CREATE EXTENSION pg_cron SCHEMA public" >/dev/null || exit 2
wait_until 60 on_topic || { say "the archiver did not start on the new extension"; exit 2; }

awk -v n=$MOVIES 'BEGIN { split("Action Comedy Drama Sci-Fi Romance Thriller Animation Crime Horror Documentary", g, " ");
    print "movieId,title,genres";
    for (m = 1; m <= n; m++) printf "%d,Movie %d (%d),%s|%s\n", m, m, 1950 + m % 70, g[m % 10 + 1], g[(m * 3) % 10 + 1] }' >"$W/movies.csv"
awk -v users=$USERS -v movies=$MOVIES 'BEGIN { srand(42); print "userId,movieId,rating,timestamp";
    for (u = 1; u <= users; u++) for (k = 0; k < 20; k++) {
        m = ((u % 20) * 50 + int(rand() * 80)) % movies + 1; r = (int(rand() * 10) + 1) / 2;
        printf "%d,%d,%.1f,%d\n", u, m, r, 1500000000 + u * 100 + k } }' >"$W/ratings.csv"
chmod 0644 "$W"/*.csv
"${PSQL[@]}" -c "SELECT recsys_load_movies('$W/movies.csv')" >/dev/null || exit 2
# a loaded machine may time a fresh topic's first deliveries out: up to 3 jobs
for try in 1 2 3; do
    "${PSQL[@]}" -c "SELECT events FROM recsys_ingest_csv('$W/ratings.csv')" >/dev/null && break
    [ "$try" -lt 3 ] || exit 2
    say "initial ingest failed, again"
    sleep 5
done
"${PSQL[@]}" -c "SELECT recsys_archive_sync('120 s')" >/dev/null || exit 2
"${PSQL[@]}" -c "SELECT events FROM recsys_aggregate()" >/dev/null || exit 2
"${PSQL[@]}" -c "SELECT recsys_schedule('* * * * *')" >/dev/null || exit 2

START=$(date +%s)
END=$((START + DURATION))
LOG_FROM=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
say "running $MINUTES minutes ($RATERS raters, $RECOMMENDERS recommenders, an ingest every ${INGEST_EVERY}s, samples every ${SAMPLE}s)"

# ---- load ---------------------------------------------------------------------------
for i in $(seq 1 "$RATERS"); do
    ( while [ ! -f "$W/stop" ]; do
          echo "SELECT recsys_rate($((RANDOM % USERS + 1)), $((RANDOM % MOVIES + 1)), $((RANDOM % 10 + 1)) / 2.0);"
          sleep 0.1
      done ) | psql -X -q -tA >/dev/null 2>"$W/errors.rater$i" &
    CLIENTS+=($!)
done
for i in $(seq 1 "$RECOMMENDERS"); do
    ( while [ ! -f "$W/stop" ]; do
          if [ $((RANDOM % 10)) -lt 8 ]; then u=$((RANDOM % 200 + 1)); else u=$((RANDOM % USERS + 1)); fi
          echo "SELECT count(*) FROM recsys_recommend($u, 10);"
          sleep 0.05
      done ) | psql -X -q -tA >/dev/null 2>"$W/errors.recommender$i" &
    CLIENTS+=($!)
done
( j=0
  while [ ! -f "$W/stop" ]; do
      for _ in $(seq 1 "$INGEST_EVERY"); do [ -f "$W/stop" ] && break; sleep 1; done
      [ -f "$W/stop" ] && break
      j=$((j + 1))
      awk -v users=$USERS -v movies=$MOVIES -v j=$j 'BEGIN { srand(j); print "userId,movieId,rating,timestamp";
          for (k = 0; k < 300; k++) printf "%d,%d,%.1f,%d\n", int(rand() * users) + 1, int(rand() * movies) + 1,
              (int(rand() * 10) + 1) / 2, 1600000000 + j * 1000 + k }' >"$W/ingest$j.csv"
      chmod 0644 "$W/ingest$j.csv"
      psql -X -qtA -c "SELECT events FROM recsys_ingest_csv('$W/ingest$j.csv')" >>"$W/ingests" 2>>"$W/errors.ingest"
  done ) &
CLIENTS+=($!)

# ---- samples ------------------------------------------------------------------------
kb() { awk -v k="$2" '$1 == k":" { print $2; found = 1 } END { if (!found) print -1 }' "$1" 2>/dev/null || echo -1; }
: >"$W/samples.jsonl"
while [ "$(date +%s)" -lt "$END" ]; do
    now=$(date +%s)
    workers=""
    while read -r pid type; do
        [ -n "$pid" ] || continue
        workers+="${workers:+,}{\"pid\":$pid,\"type\":\"$type\",\"vmrss\":$(kb /proc/$pid/status VmRSS),\"rssanon\":$(kb /proc/$pid/status RssAnon),\"pss\":$(kb /proc/$pid/smaps_rollup Pss),\"pss_anon\":$(kb /proc/$pid/smaps_rollup Pss_Anon)}"
    done < <(psql -X -qtA -F ' ' -c "SELECT pid, replace(backend_type, ' ', '_') FROM pg_stat_activity WHERE backend_type LIKE 'recsys %' ORDER BY pid" 2>/dev/null)
    m=$(psql -X -qtA -F ',' -c "SELECT (SELECT count(*) FROM recsys.outbox), (SELECT count(*) FROM recsys.event_queue),
            (SELECT coalesce(sum(value::bigint), 0) FROM recsys.status WHERE component = 'event_log' AND metric LIKE '% lag' AND value ~ '^-?[0-9]+$'),
            (SELECT coalesce(max(value::bigint), -1) FROM recsys.status WHERE component = 'aggregate' AND metric = 'objects_pending' AND value ~ '^[0-9]+$'),
            (SELECT coalesce(extract(epoch FROM now() - max(finished_at))::int, -1) FROM recsys.aggregate_runs WHERE status = 'succeeded'),
            (SELECT max(value::bigint) FROM recsys.status WHERE component = 'cache' AND metric = 'hits'),
            (SELECT max(value::bigint) FROM recsys.status WHERE component = 'cache' AND metric = 'misses'),
            (SELECT count(*) FROM recsys.archive_recent_ids)" 2>/dev/null)
    IFS=, read -r outbox queue alag apending aage hits misses recent <<<"$m"
    echo "{\"t\":$((now - START)),\"outbox\":${outbox:--1},\"queue\":${queue:--1},\"archive_lag\":${alag:--1},\"objects_pending\":${apending:--1},\"aggregate_age\":${aage:--1},\"hits\":${hits:--1},\"misses\":${misses:--1},\"recent_ids\":${recent:--1},\"workers\":[$workers]}" >>"$W/samples.jsonl"
    sleep "$SAMPLE"
done
touch "$W/stop"
for p in "${CLIENTS[@]}"; do wait "$p" 2>/dev/null; done
CLIENTS=()
STOP=$(date +%s)

# ---- what happened ------------------------------------------------------------------
psql -X -qtA -F ',' -c "SELECT run_id, status, extract(epoch FROM started_at)::bigint, coalesce(extract(epoch FROM finished_at)::bigint, 0),
        events, coalesce(peak_memory_bytes, 0), coalesce(replace(error, ',', ';'), '') FROM recsys.aggregate_runs
        WHERE started_at >= to_timestamp($START) ORDER BY run_id" >"$W/runs.csv"
psql -X -qtA -F ',' -c "SELECT status, count(*), coalesce(sum(events), 0) FROM recsys.ingest_jobs WHERE started_at >= to_timestamp($START + 1) GROUP BY 1" >"$W/jobs.csv"
cat "$W"/errors.* 2>/dev/null | grep -E 'ERROR|FATAL' >"$W/client_errors" || true
tail -c +$((LOG_FROM + 1)) "$LOG" 2>/dev/null | grep -E '(ERROR|FATAL|PANIC): ' >"$W/log_errors" || true
ratings=$(psql -X -qtA -c "SELECT count(*) FROM recsys.ratings")

python3 - "$W" "$OUT" "$START" "$STOP" "$DURATION" "$MINUTES" "$STACK_DIR/reliability-figures.jsonl" "$ratings" <<'PY'
import json, statistics, sys, time
W, OUT, START, STOP, DURATION, MINUTES, FIGS, RATINGS = sys.argv[1:9]
START, STOP, DURATION, RATINGS = int(START), int(STOP), int(DURATION), int(RATINGS)
import os
env = lambda k, d: float(os.environ.get(k, d))
MEM_BOUND = env("SOAK_MEM_BOUND_KB", 1024)
OUTBOX_MAX = env("SOAK_OUTBOX_MAX", 2000)
DEDUP_BYTES = env("SOAK_DEDUP_BYTES", 128)
samples = [json.loads(l) for l in open(f"{W}/samples.jsonl") if l.strip()]
warm = min(120, max(30, DURATION * 0.1))
rest = [s for s in samples if s["t"] >= warm]
span = max(1, DURATION - warm)
first = [s for s in rest if s["t"] < warm + span / 3]
last = [s for s in rest if s["t"] >= warm + 2 * span / 3]
med = lambda xs: statistics.median(xs) if xs else None
checks = []
def check(name, good, detail):
    checks.append({"check": name, "ok": bool(good), "detail": detail})

# memory of the long-lived workers
mem = {}
for kind in ("recsys_archiver", "recsys_relay"):
    def series(ss, key):
        return [w[key] for s in ss for w in s["workers"] if w["type"] == kind and w[key] >= 0]
    pids = sorted({w["pid"] for s in samples for w in s["workers"] if w["type"] == kind})
    a, b = med(series(first, "rssanon")), med(series(last, "rssanon"))
    m = {"pids": pids,
         "rssanon_kb_first": a, "rssanon_kb_last": b,
         "vmrss_kb_first": med(series(first, "vmrss")), "vmrss_kb_last": med(series(last, "vmrss")),
         "pss_kb_first": med(series(first, "pss")), "pss_kb_last": med(series(last, "pss")),
         "pss_anon_kb_first": med(series(first, "pss_anon")), "pss_anon_kb_last": med(series(last, "pss_anon")),
         "rssanon_kb_max": max(series(samples, "rssanon"), default=None)}
    m["growth_kb"] = None if a is None or b is None else b - a
    # the archiver remembers the ids of the last real-time events (ARCHIVE_DEDUP_WINDOW
    # per partition, pruned at twice that): designed, bounded memory, allowed
    # SOAK_DEDUP_BYTES (128) per id it holds more; everything else must stay flat
    allow = 0.0
    if kind == "recsys_archiver":
        ra = med([s.get("recent_ids", -1) for s in first if s.get("recent_ids", -1) >= 0])
        rb = med([s.get("recent_ids", -1) for s in last if s.get("recent_ids", -1) >= 0])
        m["recent_ids_first"], m["recent_ids_last"] = ra, rb
        if ra is not None and rb is not None:
            allow = max(0.0, rb - ra) * DEDUP_BYTES / 1024
    m["dedup_allowance_kb"] = round(allow, 1)
    m["net_growth_kb"] = None if m["growth_kb"] is None else round(m["growth_kb"] - allow, 1)
    mem[kind] = m
    check(f"{kind} memory flat (RssAnon median {a} -> {b} KB, {m['net_growth_kb']} KB net of {m['dedup_allowance_kb']} KB for the dedup window's new ids, bound +{MEM_BOUND:.0f} KB)",
          m["net_growth_kb"] is not None and m["net_growth_kb"] <= MEM_BOUND, m)
    check(f"{kind} never restarted (pids {pids})", len(pids) == 1, pids)
transient = {}
for kind in ("recsys_aggregate", "recsys_ingest"):
    xs = [w["rssanon"] for s in samples for w in s["workers"] if w["type"] == kind and w["rssanon"] >= 0]
    transient[kind] = {"samples": len(xs), "rssanon_kb_max": max(xs, default=None)}

# outbox, lags
ob = [s["outbox"] for s in samples if s["outbox"] >= 0]
check(f"outbox bounded (max {max(ob, default=None)} rows, bound {OUTBOX_MAX:.0f}; median {med([s['outbox'] for s in first])} -> {med([s['outbox'] for s in last])})",
      ob and max(ob) <= OUTBOX_MAX and med([s["outbox"] for s in last]) <= med([s["outbox"] for s in first]) + 200, ob)
la, lb = med([s["archive_lag"] for s in first]), med([s["archive_lag"] for s in last])
check(f"archive lag stable (median {la} -> {lb} events)", la is not None and lb is not None and lb <= 2 * la + 1000, [la, lb])
pa, pb = max((s["objects_pending"] for s in first), default=None), max((s["objects_pending"] for s in last), default=None)
check(f"aggregate lag stable (objects pending, max {pa} -> {pb}, bound 2 x first + 40)",
      pa is not None and pb is not None and pb <= 2 * pa + 40, [pa, pb])
ages = [s["aggregate_age"] for s in rest]
check(f"the last succeeded aggregate is never older than 150 s (max {max(ages, default=None)} s)", ages and 0 <= max(ages) <= 150, ages)

# hit rate per third
def rate(ss):
    if len(ss) < 2: return None
    h = ss[-1]["hits"] - ss[0]["hits"]; m = ss[-1]["misses"] - ss[0]["misses"]
    return None if h + m <= 0 else h / (h + m)
ha, hb = rate(first), rate(last)
HIT_DROP = env("SOAK_HIT_DROP", 0.15 if DURATION >= 600 else 0.3)
check(f"hit rate stable ({ha if ha is None else round(ha, 3)} -> {hb if hb is None else round(hb, 3)}, at most {HIT_DROP} lower)",
      ha is not None and hb is not None and hb >= ha - HIT_DROP, [ha, hb])
lookups = samples[-1]["hits"] + samples[-1]["misses"] - samples[0]["hits"] - samples[0]["misses"] if samples else 0

# errors
cerr = open(f"{W}/client_errors").read().splitlines()
lerr = open(f"{W}/log_errors").read().splitlines()
check(f"no client error ({len(cerr)})", not cerr, cerr[:5])
check(f"no ERROR/FATAL/PANIC in the server log ({len(lerr)})", not lerr, lerr[:5])
runs = []
for l in open(f"{W}/runs.csv"):
    f = l.rstrip("\n").split(",", 6)
    if len(f) >= 6:
        runs.append({"run_id": int(f[0]), "status": f[1], "started": int(f[2]), "finished": int(f[3]),
                     "events": int(f[4] or 0), "peak_memory_bytes": int(f[5] or 0), "error": f[6] if len(f) > 6 else ""})
failed = [r for r in runs if r["status"] != "succeeded"]
check(f"no failed aggregate run ({len(failed)} of {len(runs)})", not failed, failed[:3])
jobs = {}
for l in open(f"{W}/jobs.csv"):
    f = l.strip().split(",")
    if len(f) == 3: jobs[f[0]] = {"jobs": int(f[1]), "events": int(f[2])}
check(f"every ingest job succeeded ({jobs})", jobs and set(jobs) == {"succeeded"}, jobs)
# a run in every pg_cron minute
ticks = list(range((START // 60 + 1) * 60, STOP - 30 + 1, 60))
missing = [t for t in ticks if not any(r["status"] == "succeeded" and t <= r["started"] < t + 50 for r in runs)]
check(f"a succeeded aggregate run each minute ({len(ticks) - len(missing)} of {len(ticks)} pg_cron ticks)",
      len(ticks) >= 1 and not missing, [time.strftime("%H:%M", time.gmtime(t)) for t in missing])
peaks = [r["peak_memory_bytes"] for r in runs if r["status"] == "succeeded"]
third = max(1, len(peaks) // 3)

result = {
    "scenario": "soak", "minutes": float(MINUTES), "samples": len(samples), "warmup_seconds": warm,
    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START)),
    "workers": mem, "transient_workers": transient,
    "outbox_max": max(ob, default=None), "queue_max": max((s["queue"] for s in samples), default=None),
    "archive_lag": {"first_median": la, "last_median": lb, "max": max((s["archive_lag"] for s in samples), default=None)},
    "objects_pending": {"first_max": pa, "last_max": pb},
    "aggregate_age_max_seconds": max(ages, default=None),
    "hit_rate": {"first": ha, "last": hb}, "cache_lookups": lookups,
    "aggregate_runs": {"total": len(runs), "failed": len(failed), "ticks": len(ticks), "missing": len(missing),
                       "events": sum(r["events"] for r in runs),
                       "peak_memory_mb_first": round(med(peaks[:third]) / 1048576, 1) if peaks else None,
                       "peak_memory_mb_last": round(med(peaks[-third:]) / 1048576, 1) if peaks else None},
    "ingest_jobs": jobs, "ratings_after": RATINGS,
    "client_errors": len(cerr), "log_errors": len(lerr),
    "checks": checks, "ok": all(c["ok"] for c in checks),
}
with open(OUT, "w") as fh:
    json.dump(result, fh, indent=1)
    fh.write("\n")
for kind, m in mem.items():
    print(f"# figure: soak {kind} RssAnon {m['rssanon_kb_first']} -> {m['rssanon_kb_last']} KB (growth {m['growth_kb']} KB, net {m['net_growth_kb']} KB; ids {m.get('recent_ids_first')} -> {m.get('recent_ids_last')}), "
          f"VmRSS {m['vmrss_kb_first']} -> {m['vmrss_kb_last']} KB, Pss {m['pss_kb_first']} -> {m['pss_kb_last']} KB")
print(f"# figure: soak outbox max {result['outbox_max']} rows; archive lag median {la} -> {lb} events (max {result['archive_lag']['max']}); "
      f"objects pending (max) {pa} -> {pb}; last aggregate at most {result['aggregate_age_max_seconds']} s old")
print(f"# figure: soak cache hit rate {ha if ha is None else round(ha, 3)} -> {hb if hb is None else round(hb, 3)} ({lookups} lookups); "
      f"aggregate runs {len(runs)} ({len(failed)} failed, {len(missing)} of {len(ticks)} minutes missed), "
      f"peak memory {result['aggregate_runs']['peak_memory_mb_first']} -> {result['aggregate_runs']['peak_memory_mb_last']} MB")
for c in checks:
    print(("ok" if c["ok"] else "not ok") + " - " + c["check"])
summary = {k: result[k] for k in ("scenario", "minutes", "at", "outbox_max", "hit_rate", "archive_lag", "objects_pending", "ok")}
summary["workers"] = {k: {"rssanon_kb_first": v["rssanon_kb_first"], "rssanon_kb_last": v["rssanon_kb_last"], "growth_kb": v["growth_kb"], "net_growth_kb": v["net_growth_kb"]} for k, v in mem.items()}
summary["aggregate_runs"] = result["aggregate_runs"]
with open(FIGS, "a") as fh:
    fh.write(json.dumps(summary) + "\n")
sys.exit(0 if result["ok"] else 1)
PY
