#!/usr/bin/env bash
# scripts/test.sh: the README's test command. On a fresh Debian 12 machine, as root:
#
#   sudo bash scripts/test.sh
#
# installs what is missing (scripts/setup.sh), builds and installs recsys, starts a
# dedicated stack (test/stack.sh), runs pg_regress and every integration suite
# (test/run.sh), stops the stack and ends with the line "N passed, M failed".
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
export RECSYS_STACK_DIR=${RECSYS_STACK_DIR:-/var/tmp/recsys-test-stack}
export RECSYS_PORT_BASE=${RECSYS_PORT_BASE:-15500}

bash "$HERE/setup.sh" || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

# A clean stack each run: tests must not depend on what an earlier run left.
"$REPO/test/stack.sh" down >/dev/null 2>&1 || true
rm -rf "$RECSYS_STACK_DIR"
if ! "$REPO/test/stack.sh" up; then
    echo "stack failed to start; logs:"
    tail -n 30 "$RECSYS_STACK_DIR"/logs/*.log 2>/dev/null
    "$REPO/test/stack.sh" down || true
    echo "0 passed, 1 failed"
    exit 1
fi

"$REPO/test/run.sh"
rc=$?
"$REPO/test/stack.sh" down >/dev/null 2>&1 || true
exit $rc
