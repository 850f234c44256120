# test/lib.sh: TAP helpers for the integration suites (test/t/*.t), run by prove.
#
# A suite is an executable bash script that sources this file, assumes the stack is up
# and its environment exported (eval "$(test/stack.sh env)"), checks outcomes and ends
# with done_testing. Example:
#
#   source "$(dirname "$0")/../lib.sh"
#   is "$(psql_val 'SELECT 1 + 1')" 2 "addition works"
#   done_testing

set -u
TEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$TEST_DIR/.." && pwd)
STACK="$TEST_DIR/stack.sh"
_tap_n=0
_tap_failed=0

# ok STATUS NAME: pass when STATUS (a command's exit status) is 0; returns STATUS.
ok() {
    local status=$1 name=$2
    _tap_n=$((_tap_n + 1))
    if [ "$status" -eq 0 ]; then
        echo "ok $_tap_n - $name"
    else
        echo "not ok $_tap_n - $name"
        _tap_failed=$((_tap_failed + 1))
    fi
    return "$status"
}

# is GOT EXPECTED NAME: pass when the two strings are equal.
is() {
    local got=$1 expected=$2 name=$3
    if [ "$got" = "$expected" ]; then
        ok 0 "$name"
    else
        ok 1 "$name"
        printf '#   got:      %s\n#   expected: %s\n' "$got" "$expected"
    fi
}

# like GOT REGEX NAME: pass when GOT matches the extended regular expression.
like() {
    local got=$1 re=$2 name=$3
    if printf '%s' "$got" | grep -Eq -- "$re"; then
        ok 0 "$name"
    else
        ok 1 "$name"
        printf '#   got:      %s\n#   expected to match: %s\n' "$got" "$re"
    fi
}

# unlike GOT REGEX NAME: pass when GOT does not match.
unlike() {
    local got=$1 re=$2 name=$3
    if printf '%s' "$got" | grep -Eq -- "$re"; then
        ok 1 "$name"
        printf '#   got:      %s\n#   expected not to match: %s\n' "$got" "$re"
    else
        ok 0 "$name"
    fi
}

diag() { printf '# %s\n' "$*"; }

# psql_val SQL: run SQL in the recsys database, print the unaligned, tuples-only result.
psql_val() {
    psql -X -q -v ON_ERROR_STOP=1 -tA -c "$1" 2>&1
}

# psql_err SQL: run SQL expected to fail; print the error text (empty if it succeeded).
psql_err() {
    local out
    if out=$(psql -X -q -v ON_ERROR_STOP=1 -tA -c "$1" 2>&1); then
        echo ""
    else
        echo "$out"
    fi
}

# wait_for SECONDS CMD...: retry CMD until it succeeds or SECONDS pass; status of the last try.
wait_for() {
    local seconds=$1; shift
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

# fixture_dir: a directory the server's OS user can read (CI runs as root under a 0700
# home), removed when the suite exits.
fixture_dir() {
    local d
    d=$(mktemp -d /tmp/recsys-fixture.XXXXXX)
    chmod 0755 "$d"
    echo "$d"
}

done_testing() {
    echo "1..$_tap_n"
    [ "$_tap_failed" -eq 0 ]
}
