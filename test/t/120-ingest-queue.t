#!/usr/bin/env bash
# Without recsys.kafka_brokers, recsys_ingest_csv writes the events into the queue table
# recsys.event_queue (COPY's multi-insert path): the rows match the file; 'stop' adds
# nothing; rejects as with Kafka.
source "$(dirname "$0")/1-ingest-lib.bash"

load_catalogue >/dev/null
NOKAFKA="SET recsys.kafka_brokers = '';"
# The server's archiver reads Kafka, not this queue: remove the rows this suite adds,
# so that they do not turn up when a later suite switches the archiver to the queue.
q0=$(psql_val "SELECT coalesce(max(id), 0) FROM recsys.event_queue")
trap 'psql_val "DELETE FROM recsys.event_queue WHERE id > $q0" >/dev/null; rm -rf "$FX"' EXIT
# queue_events JOB: "line key user movie rating ts" of the job's rows in the queue table
queue_events() {
    psql -X -qtA -F $'\t' -c "SELECT key, value FROM recsys.event_queue WHERE value LIKE '{\"event_id\":$1__________,%' ORDER BY id" |
        parse_events | awk -v job="$1" '{ $1 = $1 - job * 10000000000; print }'
}

res=$(psql_val "$NOKAFKA SELECT job_id || ' ' || events || ' ' || rejected FROM recsys_ingest_csv('$FX/ratings.csv')")
read -r job events rejected <<<"$res"
is "$events $rejected" "10 0" "queue: 10 events, 0 rejected"
is "$(job_col "$job" "target || ' ' || status")" "queue succeeded" "queue: job target and status"
is "$(queue_events "$job")" "$(cat "$FX/ratings.expected")" "queue rows match the file, in file order"

before=$(psql_val "SELECT count(*) FROM recsys.event_queue")
like "$(psql_err "$NOKAFKA SELECT * FROM recsys_ingest_csv('$FX/ratings_bad.csv', on_error => 'stop')")" \
     'invalid row at line 3 of file' "queue, stop: error names the line"
is "$(psql_val "SELECT count(*) FROM recsys.event_queue")" "$before" "queue, stop: no row added"

res=$(psql_val "$NOKAFKA SELECT job_id || ' ' || events || ' ' || rejected FROM recsys_ingest_csv('$FX/ratings_bad.csv')")
read -r job events rejected <<<"$res"
is "$events $rejected" "2 10" "queue, reject: 2 events, 10 rejected"
is "$(queue_events "$job" | awk '{print $1}' | tr '\n' ' ')" "2 12 " "queue, reject: the good rows only"

res=$(psql_val "$NOKAFKA SELECT job_id || ' ' || events FROM recsys_ingest_csv('$FX/ratings.csv', on_error => 'stop')")
read -r job events <<<"$res"
is "$events" 10 "queue, stop on a clean file: 10 events"
is "$(queue_events "$job" | wc -l)" 10 "queue, stop on a clean file: 10 rows committed"


# --- hostile files (issue 9): each bad record becomes a reject naming its line, the job goes on
HDR='userId,movieId,rating,timestamp'
# ingest FILE [MODE]: "job events rejected" of a queue job
ingest() { psql_val "$NOKAFKA SELECT job_id || ' ' || events || ' ' || rejected FROM recsys_ingest_csv('$1', on_error => '${2:-reject}')"; }
# rejects JOB: "line:reason" of the job's rejects
rejects() { psql_val "SELECT string_agg(line || ':' || reason, ' | ' ORDER BY line) FROM recsys.ingest_rejects WHERE job_id = $1"; }

# a NUL byte inside a field: not ingested as user 12
printf '%s\n1,1,4.0,964982703\n12\0garbage,1,4.0,964982703\n2,1,3.0,964982703\n' "$HDR" > "$FX/nul.csv"
read -r job events rejected <<<"$(ingest "$FX/nul.csv")"
is "$events $rejected" "2 1" "NUL byte: the row is rejected, the others ingested"
is "$(rejects "$job")" "3:NUL byte in field 1 at line 3" "NUL byte: the reason names it and the line"
is "$(queue_events "$job" | awk '{print $1 ":" $3}' | tr '\n' ' ')" "2:1 4:2 " "NUL byte: no event for user 12"

# a record over the 1 MB limit, in 'reject' mode: one reject, the rows after it go on
{ printf '%s\n1,1,4.0,964982703\n2,"' "$HDR"; head -c 1200000 /dev/zero | tr '\0' x; printf '",3.0,964982703\n3,1,2.0,964982703\n'; } > "$FX/long.csv"
read -r job events rejected <<<"$(ingest "$FX/long.csv")"
is "$events $rejected" "2 1" "record over the limit: a reject, and the job goes on"
like "$(rejects "$job")" '^3:record starting at line 3 is too long: more than 1048576 bytes or 65536 fields \(lines 3 to 3\)$' "record over the limit: the reason"
is "$(queue_events "$job" | awk '{print $1}' | tr '\n' ' ')" "2 4 " "record over the limit: the good row after it is ingested"
is "$(job_col "$job" "status || ' ' || lines || ' ' || (bytes_read = bytes_total)")" "succeeded 3 true" "record over the limit: job succeeded, all read"
like "$(psql_err "$NOKAFKA SELECT * FROM recsys_ingest_csv('$FX/long.csv', on_error => 'stop')")" \
     'invalid row at line 3 of file ".*long.csv": record starting at line 3 is too long' "record over the limit, 'stop': the error names the line"

# an unterminated quote: reported at its line with the lines it took; the rows after it are read again
printf '%s\n1,1,4.0,964982703\n2,"1,3.0,964982703\n3,1,2.0,964982703\n4,1,1.0,964982703\n' "$HDR" > "$FX/quote.csv"
read -r job events rejected <<<"$(ingest "$FX/quote.csv")"
is "$events $rejected" "3 1" "unterminated quote: one reject, the rows after it ingested"
is "$(rejects "$job")" "3:unterminated quoted field starting at line 3: no closing quote in the 3 lines to the end of the file; reading resumed at line 4" \
   "unterminated quote: the reason, its line, the lines it took"
is "$(queue_events "$job" | awk '{print $1 ":" $3}' | tr '\n' ' ')" "2:1 4:3 5:4 " "unterminated quote: each later row once, with its own line"
like "$(psql_val "SELECT raw FROM recsys.ingest_rejects WHERE job_id = $job")" '^2,"1,3.0,964982703' "unterminated quote: raw text from its first line"
like "$(psql_err "$NOKAFKA SELECT * FROM recsys_ingest_csv('$FX/quote.csv', on_error => 'stop')")" \
     'invalid row at line 3 of file ".*quote.csv": unterminated quoted field starting at line 3' "unterminated quote, 'stop': the error says so"

# timestamps: an offset cannot reach year 10000 (epoch values stop at 9999 too)
printf '%s\n1,1,4.0,9999-12-31T23:59:59-23:59\n1,1,4.0,253402300800\n1,1,4.0,9999-12-31T23:59:59Z\n' "$HDR" > "$FX/ts.csv"
read -r job events rejected <<<"$(ingest "$FX/ts.csv")"
is "$events $rejected" "1 2" "year 10000 refused both ways, 9999-12-31 23:59:59Z accepted"
is "$(queue_events "$job" | awk '{print $1 ":" $6}')" "4:253402300799" "the last second of 9999"

# a duplicate header name is an error naming the column
printf 'userId,movieId,rating,timestamp,movieId\n1,1,4.0,964982703,2\n' > "$FX/dup.csv"
like "$(psql_err "$NOKAFKA SELECT * FROM recsys_ingest_csv('$FX/dup.csv')")" \
     'column "movieId" appears twice in the header of file ".*dup.csv" \(columns 2 and 5\)' "duplicate header name: an error naming it"

# a FIFO (or any non-regular file) is refused, without hanging the backend in open()
mkfifo -m 0644 "$FX/fifo.csv"
out=$(timeout 60 psql -X -qtA -c "$NOKAFKA SELECT * FROM recsys_ingest_csv('$FX/fifo.csv')" 2>&1)
rc=$?
isnt_timeout=$([ "$rc" -ne 124 ] && echo yes || echo no)
is "$isnt_timeout" yes "FIFO: recsys_ingest_csv returns (does not block)"
like "$out" "\"$FX/fifo.csv\" is not a regular file: it is a FIFO" "FIFO: refused as not a regular file"
out=$(timeout 60 psql -X -qtA -c "SELECT recsys_load_movies('$FX/fifo.csv')" 2>&1)
like "$out" "\"$FX/fifo.csv\" is not a regular file: it is a FIFO" "FIFO: recsys_load_movies refuses it too"
like "$(psql_err "SELECT * FROM recsys_ingest_csv('/dev/zero')")" '"/dev/zero" is not a regular file: it is a character device' "a device is refused"

# the catalogue: a NUL byte fails the load naming the line; empty genre names are dropped
printf 'movieId,title,genres\n999001,"Jum\0anji (1995)",Adventure\n' > "$FX/movies_nul.csv"
like "$(psql_err "SELECT recsys_load_movies('$FX/movies_nul.csv')")" \
     'line 2 of file ".*movies_nul.csv" cannot be read: NUL byte in field 2 at line 2' "movies: a NUL byte fails the load, naming the line"
is "$(psql_val "SELECT count(*) FROM recsys.movies WHERE movie_id = 999001")" 0 "movies: nothing of it loaded"
printf 'movieId,title,genres\n999002,Empty Genres (2001),Adventure|||\n999003,Only Bars (2002),|\n' > "$FX/movies_genres.csv"
is "$(psql_val "SELECT recsys_load_movies('$FX/movies_genres.csv')")" 2 "movies with empty genre names load"
is "$(psql_val "SELECT string_agg(movie_id || ':' || genres::text, ' ' ORDER BY movie_id) FROM recsys.movies WHERE movie_id IN (999002, 999003)")" \
   "999002:{Adventure} 999003:{}" "empty genre names are dropped"
psql_val "DELETE FROM recsys.movies WHERE movie_id IN (999001, 999002, 999003)" >/dev/null

done_testing
