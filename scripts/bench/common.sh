# Shared by the host halves of the benchmarks (scripts/bench/*): one rig
# run, its progress, the medians. Source it after scripts/lib/common.sh;
# do not run it.
# shellcheck shell=bash

# bench_in_rig RIG_RUN_ARGS...
# Runs scripts/rig/run with RIG_RUN_ARGS (options, the L1 script and its
# arguments), shows the benchmark's lines as they come (@@BENCH, the
# "    |" detail under them, "bench:" notes; the rest of L1's console is
# noise here), then prints the medians per VMM and the ratios gureum/QEMU
# (medians.awk). Returns the rig's exit code. Sets the EXIT trap (to
# remove its copy of the console).
bench_in_rig() {
  local rc=0
  bench_console=$(mktemp)
  trap 'rm -f "$bench_console"' EXIT
  "$GUREUM_ROOT/scripts/rig/run" "$@" \
    | tee "$bench_console" | grep --line-buffered -E '^@@BENCH|^    \||^bench:' >&2 || rc=${PIPESTATUS[0]}
  awk -f "$GUREUM_ROOT/scripts/bench/medians.awk" "$bench_console"
  if (( rc != 0 )); then
    # The whole console, for what the filtered lines do not show (an L1
    # kernel panic, a guest's last words).
    mkdir -p "$GUREUM_TARGET/bench"
    cp "$bench_console" "$GUREUM_TARGET/bench/last-failed-console.log"
    log "benchmark incomplete (rig exit $rc); see the @@BENCH-FAIL lines above and" \
      "$GUREUM_TARGET/bench/last-failed-console.log"
  fi
  return "$rc"
}
