# bench/lib.sh: what the benchmark scripts share (sourced; REPO, BENCH_DIR and SETTLE
# set by the caller, and a die function).

# fresh_stack: stop the stack of $RECSYS_STACK_DIR, delete its directory, start a new
# one there and evaluate its environment.
fresh_stack() {
    local try
    "$REPO/test/stack.sh" down >/dev/null 2>&1 || true
    rm -rf "$RECSYS_STACK_DIR"
    # a first start on a new directory can find MinIO not yet serving: try again
    for try in 1 2 3; do
        "$REPO/test/stack.sh" up >/dev/null 2>"$BENCH_DIR/stack-up.log" && break
        [ $try -lt 3 ] || { cat "$BENCH_DIR/stack-up.log" >&2; die "test/stack.sh up failed"; }
        sleep 2
    done
    eval "$("$REPO/test/stack.sh" env)"
    sleep "$SETTLE" # let the new JVM and the workers finish starting
}
