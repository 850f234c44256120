#!/usr/bin/env bash
# 225-archive-duplicates.t: the guarantee chain's first link is "at least once": a
# producer may send an event twice, with the same id (issue 9, item 8).
#
# - Real-time events (ids below 10^10) sent again (same id, same text) are dropped by
#   the archiver (an id with another text is kept): each is
#   archived once, the offset of every copy dropped is in recsys.archive_duplicates,
#   so offsets = events + dead letters + duplicates, and recsys.status counts them.
#   This holds across a restart of the archiver (its window is in a table), and inside
#   one batch.  Ingested ids (from 10^10) are left to the aggregate.
# - A relay killed (kill -9) after Kafka acknowledged a batch and before its commit
#   sends the batch again; the archive still holds each rating once.
source "$(dirname "$0")/2-archive-lib.bash"
PGDATA_DIR=$(psql -X -qtA -c 'SHOW data_directory')
trap 'restore_defaults; rm -f "$PGDATA_DIR/recsys_relay_fault" "$PGDATA_DIR/recsys_relay_paused"' EXIT
tmp=$(fixture_dir)
T=arch225-$$-$RANDOM
# real-time ids far above those recsys_rate takes from its sequence (below 10^10)
B=2000000000

create_topic "$T" 3
use_topic "$T"
set_conf recsys.archive_flush_interval '300ms'
dups() { psql_val "SELECT count(*) FROM recsys.archive_duplicates WHERE topic = '$T'"; }
accounting() {
    psql_val "SELECT (SELECT coalesce(sum(last_offset - first_offset + 1), 0) FROM recsys.archive_manifest WHERE topic = '$T')
                   - (SELECT coalesce(sum(events + dead_letters + duplicates), 0) FROM recsys.archive_manifest WHERE topic = '$T')
                   || ' ' || (SELECT coalesce(sum(next_offset), 0) FROM recsys.archive_offsets WHERE topic = '$T')
                   || ' ' || ((SELECT coalesce(sum(events), 0) FROM recsys.archive_manifest WHERE topic = '$T')
                              + (SELECT count(*) FROM recsys.archive_duplicates WHERE topic = '$T')
                              + (SELECT count(*) FROM recsys.archive_dead_letters WHERE topic = '$T'))"
}
status_dups() { psql_val "SELECT value FROM recsys.status WHERE component = 'archive' AND metric = 'duplicates_dropped'"; }
before=$(status_dups)

# --- 1000 events, then 1000 of which 500 were sent already (a resend), in two batches
gen_events $((B + 1)) 1000 | produce "$T"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
gen_events $((B + 501)) 1000 | produce "$T"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
gen_events $((B + 1)) 1500 | cut -d'|' -f2- | LC_ALL=C sort >"$tmp/expected"
check_archive "$T" "$tmp/expected" "resend in a later batch"
is "$(dups)" 500 "the 500 copies are recorded in recsys.archive_duplicates"
is "$(psql_val "SELECT count(*) FROM recsys.archive_duplicates d WHERE topic = '$T' AND archived_offset < \"offset\" AND event_id BETWEEN $((B + 501)) AND $((B + 1000))")" 500 \
   "each with its event id and the offset of the copy archived before"
is "$(accounting | cut -d' ' -f1)" 0 "manifest: offsets of each range = events + dead letters + duplicates"
read -r _ offsets accounted <<<"$(accounting)"
is "$accounted" "$offsets" "every offset of the topic is archived, a dead letter or a duplicate ($offsets)"
is "$(status_dups)" "$((before + 500))" "recsys.status counts the duplicates dropped"

# --- duplicates inside one batch, and ingested ids (left to the aggregate)
{ gen_events $((B + 2001)) 100; gen_events $((B + 2001)) 100; } | produce "$T"
printf '%s\n' '5|{"event_id":10000000005,"user_id":5,"movie_id":1,"rating":3.0,"ts":1600000000}' \
              '5|{"event_id":10000000005,"user_id":5,"movie_id":1,"rating":3.0,"ts":1600000000}' | produce "$T"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
{ gen_events $((B + 1)) 1500; gen_events $((B + 2001)) 100; } | cut -d'|' -f2- >"$tmp/e"
printf '%s\n' '{"event_id":10000000005,"user_id":5,"movie_id":1,"rating":3.0,"ts":1600000000}' \
              '{"event_id":10000000005,"user_id":5,"movie_id":1,"rating":3.0,"ts":1600000000}' >>"$tmp/e"
LC_ALL=C sort "$tmp/e" >"$tmp/expected"
check_archive "$T" "$tmp/expected" "resend inside one batch; an ingested id kept twice"
is "$(dups)" 600 "100 more duplicates recorded"

# --- the window survives a restart of the archiver
pid=$(archiver_pids)
psql_val "SELECT pg_terminate_backend($pid)" >/dev/null
wait_for 30 bash -c "[ -n \"\$(psql -XtAc \"SELECT pid FROM pg_stat_activity WHERE backend_type = 'recsys archiver' AND pid <> $pid\")\" ]"
gen_events $((B + 1)) 10 | produce "$T"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
check_archive "$T" "$tmp/expected" "resend after the archiver restarted"
is "$(dups)" 610 "its 10 copies recorded"
is "$(status_dups)" "$((before + 610))" "recsys.status still counts every duplicate after the restart"
is "$(status state)" ok "after the restart, the state is ok"
unlike "$(status last_error_resolved_at)" '^current$' "after the restart, no stale error is shown as current"

# --- the same id with another value is no resend (a restarted sequence): archived
other='7|{"event_id":'$((B + 3))',"user_id":7,"movie_id":1,"rating":1.0,"ts":1700000000}'
echo "$other" | produce "$T"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
echo "${other#7|}" >>"$tmp/e"; LC_ALL=C sort "$tmp/e" >"$tmp/expected"
check_archive "$T" "$tmp/expected" "an id archived before, with another value"
is "$(dups)" 610 "... is not counted as a duplicate"

# --- a relay killed between Kafka's acknowledgement and its commit resends its batch
printf 'movieId,title,genres\n7,Seven (1995),Crime|Thriller\n' >"$tmp/movies.csv"
chmod 644 "$tmp/movies.csv"
psql_val "SELECT recsys_load_movies('$tmp/movies.csv')" >/dev/null
rm -f "$PGDATA_DIR/recsys_relay_paused"
echo after_ack >"$PGDATA_DIR/recsys_relay_fault"; chmod 0666 "$PGDATA_DIR/recsys_relay_fault"
psql_val "SELECT recsys_rate(880000 + g, 7, 4) FROM generate_series(1, 300) g" >/dev/null
wait_for 30 test -f "$PGDATA_DIR/recsys_relay_paused"
ok $? "the relay paused after Kafka acknowledged the batch"
kill -9 "$(awk '{print $2}' "$PGDATA_DIR/recsys_relay_paused")"
wait_pg
wait_for 60 bash -c "[ \"\$(psql -XtAc 'SELECT count(*) FROM recsys.outbox')\" = 0 ]"
ok $? "the restarted relay sent the batch again and emptied the outbox"
sent=$(kcat -C -b "$KAFKA_BROKERS" -t "$T" -o beginning -e -q -f '%s\n' 2>/dev/null | grep -c '"user_id":88[0-9]*,"movie_id":7,')
is "$sent" 600 "Kafka holds the 300 ratings twice (the resend)"
psql_val "SELECT recsys_archive_sync('60 s')" >/dev/null
archive_lines "$T" | grep '"user_id":88[0-9]*,"movie_id":7,' >"$tmp/rated"
is "$(wc -l <"$tmp/rated" | tr -d ' ') $(sort -u "$tmp/rated" | wc -l | tr -d ' ')" "300 300" "the archive holds each of the 300 ratings once"
is "$(dups)" 910 "the 300 copies are recorded as duplicates"
read -r _ offsets accounted <<<"$(accounting)"
is "$accounted" "$offsets" "every offset is still accounted for"
rm -rf "$tmp"
done_testing
