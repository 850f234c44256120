#!/usr/bin/env bash
# 250-archive-rate.t: real-time ratings reach the archive, and recsys_archive_sync()
# waits for them: recsys_rate() -> outbox -> relay -> Kafka -> archiver -> MinIO.
# A rolled-back rating is never archived; a call right after COMMIT finds the
# committed ones archived (sync waits for the outbox relay first).
source "$(dirname "$0")/2-archive-lib.bash"
trap restore_defaults EXIT
tmp=$(fixture_dir)
T=arch250-$$-$RANDOM

printf 'movieId,title,genres\n7,Seven (1995),Crime|Thriller\n8,Eight (2000),Drama\n' >"$tmp/movies.csv"
chmod 644 "$tmp/movies.csv"
psql_val "SELECT recsys_load_movies('$tmp/movies.csv')" >/dev/null
create_topic "$T" 3
use_topic "$T"

psql -X -q -v ON_ERROR_STOP=1 -c "BEGIN" -c "SELECT recsys_rate(424242, 7, 4.5)" -c "SELECT recsys_rate(424242, 8, 2.0)" \
    -c "SELECT recsys_rate(434343, 7, 5)" -c "COMMIT" >/dev/null
psql -X -q -c "BEGIN" -c "SELECT recsys_rate(454545, 7, 1)" -c "ROLLBACK" >/dev/null
total=$(psql_val "SELECT recsys_archive_sync('60 s')")
like "$total" '^[0-9]+$' "sync right after COMMIT"
archive_lines "$T" >"$tmp/archived"
is "$(grep -c '"user_id":424242,' "$tmp/archived")" 2 "both ratings of user 424242 archived"
is "$(grep -c '"user_id":434343,"movie_id":7,"rating":5' "$tmp/archived")" 1 "the rating of user 434343 archived"
is "$(grep -c '"user_id":454545,' "$tmp/archived")" 0 "the rolled-back rating is not archived"
is "$(wc -l <"$tmp/archived" | tr -d ' ')" 3 "exactly 3 events in the topic's archive"
is "$(grep -oE '"event_id":[0-9]+' "$tmp/archived" | cut -d: -f2 | awk '$1 >= 10000000000' | wc -l | tr -d ' ')" 0 "real-time event ids are below 10^10"
rm -rf "$tmp"
done_testing
