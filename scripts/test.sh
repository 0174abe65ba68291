#!/usr/bin/env bash
# `make test`: the whole suite, scheduled for a 2-core machine (BENCHMARKS.md, "Test suite").
#
# The simulated sessions need the CPU the moment a minute run starts, so they run one at a time
# at normal priority; on average they leave most of a core idle. The `spare_cpu` modules
# (replays and dbt builds: long, but no deadline tighter than a minute) run from the start in a
# cgroup that gets only CPU no other process wants (cgroup v1 `cpu.idle`, else the lowest
# `cpu.shares`), so they use that idle core without delaying a session; every process they start
# stays in the cgroup. The rest of the suite, whose tests wait on tight deadlines, runs after
# the sessions at normal priority, and the spare_cpu modules then at normal priority too.
# Where no cgroup can be made (no writable cgroup v1 cpu controller, not root), the spare_cpu
# modules run first instead, one part after another.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTEST=(.venv/bin/python -m pytest)
XDIST=(-n "${TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder)
SPARE_TESTS=(-m "spare_cpu and not simulated_session")
CGROUP=/sys/fs/cgroup/cpu/alphagen-tests-$$
status=0
spare=""
spare_log=""

weigh() {  # idle | normal: cgroup v1's cpu.idle where the kernel has it, else cpu.shares
  if [ "$1" = idle ]; then set -- 1 2; else set -- 0 1024; fi
  { echo "$1" > "$CGROUP/cpu.idle" || echo "$2" > "$CGROUP/cpu.shares"; } 2>/dev/null
}

idle_cgroup() {
  mkdir "$CGROUP" 2>/dev/null || return 1
  weigh idle && return 0
  rmdir "$CGROUP"
  return 1
}

in_cgroup() { cat "$CGROUP/cgroup.procs" 2>/dev/null; }

stop_spare() {  # on exit; after Ctrl-C, everything still in the cgroup (a script's background
                # job ignores SIGINT, and the tests' replays have sessions of their own)
  if [ -n "$spare" ]; then
    # shellcheck disable=SC2046
    kill -TERM $(in_cgroup) 2>/dev/null
    wait "$spare" 2>/dev/null
  fi
  for _ in $(seq 50); do [ -z "$(in_cgroup)" ] && break; sleep 0.2; done
  # shellcheck disable=SC2046
  kill -KILL $(in_cgroup) 2>/dev/null
  for _ in $(seq 25); do rmdir "$CGROUP" 2>/dev/null && break; [ -d "$CGROUP" ] || break; sleep 0.2; done
  [ -z "$spare_log" ] || rm -f "$spare_log"
}
trap stop_spare EXIT
trap 'exit 130' INT TERM

if idle_cgroup; then
  spare_log=$(mktemp)
  echo "the spare_cpu modules run beside the simulated sessions, in $CGROUP (their output comes last)"
  ( echo "$BASHPID" > "$CGROUP/cgroup.procs" && exec "${PYTEST[@]}" "${XDIST[@]}" "${SPARE_TESTS[@]}" ) \
    > "$spare_log" 2>&1 &
  spare=$!
else
  echo "no cgroup for spare CPU here: the spare_cpu modules run first, on their own"
  "${PYTEST[@]}" "${XDIST[@]}" "${SPARE_TESTS[@]}" || status=1
fi

# only their folder: collecting the whole suite first would delay the first session by seconds
"${PYTEST[@]}" -m simulated_session tests/sessions || status=1
# From here on the spare_cpu modules share the CPU as equals: starved beside the tests below,
# their own waits (a killed process reaped within a minute) would fail.
[ -z "$spare" ] || weigh normal
"${PYTEST[@]}" "${XDIST[@]}" -m "not spare_cpu and not simulated_session" || status=1

if [ -n "$spare" ]; then
  wait "$spare" || status=1
  spare=""
  echo "--- the spare_cpu modules:"
  cat "$spare_log"
fi
exit "$status"
