#!/usr/bin/env bash
# `make test`: the whole suite, scheduled for a 2-core machine (BENCHMARKS.md, "Test suite").
#
# The simulated sessions need the CPU the moment a minute run starts, so they run one at a time
# at normal priority; on average they leave most of a core idle. Everything else starts with
# them in a cgroup that gets only CPU no other process wants (cgroup v1 `cpu.idle`, else the
# lowest `cpu.shares`), so it uses that idle core without delaying a session; every process it
# starts stays in the cgroup:
# - the `spare_cpu` modules (replays and dbt builds: long, but no deadline tighter than a
#   minute) and the unit tests (no deadline at all) run at once;
# - the rest, whose tests wait on tight deadlines, are collected at once but held until the
#   sessions have ended (tests/conftest.py, START_AFTER).
# When the sessions end, the cgroup gets a normal share and the rest start.
# Where no cgroup can be made (no writable cgroup v1 cpu controller, not root), the spare_cpu
# modules and unit tests run first instead, then the sessions, then the rest, one after another.
set -uo pipefail
cd "$(dirname "$0")/.."

# One `make test` at a time on a machine (another terminal, another clone): two would share the
# CPU that the simulated sessions' deadlines assume is theirs, and fail them. A second waits.
# The tests get no copy of the lock (9>&- below), so it ends with this script.
LOCK=${ALPHAGEN_TESTS_LOCK:-${TMPDIR:-/tmp}/alphagen-make-test-$(id -u).lock}
exec 9>>"$LOCK" || { echo "make test: cannot open its lock file $LOCK (is TMPDIR a writable folder?)"; exit 1; }
if ! flock -n 9; then
  echo "another make test (pid $(cat "$LOCK")) is running on this machine: waiting for it to end"
  flock 9
fi
echo "$$" > "$LOCK"

# pytest caches each test module's rewritten bytecode only where Python may write bytecode; with
# PYTHONDONTWRITEBYTECODE set (as on these machines) each of the suite's pytest processes would
# rewrite and compile every test module anew (BENCHMARKS.md, "Sixteenth session").
unset PYTHONDONTWRITEBYTECODE
PYTEST=(.venv/bin/python -m pytest)
XDIST=(--dist loadfile --no-loadscope-reorder)
SPARE=(-n "${TEST_WORKERS:-3}" -m "(spare_cpu or unit) and not simulated_session")
# The rest mostly wait (on daemons, servers, timeouts): one worker more keeps both cores busy.
REST=(-n "$(( ${TEST_WORKERS:-3} + 1 ))" -m "not (spare_cpu or unit) and not simulated_session")
CGROUP=/sys/fs/cgroup/cpu/alphagen-tests-$$
status=0
spare=""
rest=""
logs=()

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

in_idle_cgroup() { ( echo "$BASHPID" > "$CGROUP/cgroup.procs" && exec "$@" ); }

# On exit, and after Ctrl-C: everything still in the cgroup (a script's background job ignores
# SIGINT, and the tests' replays have sessions of their own).
stop_background() {
  if [ -n "$spare$rest" ]; then
    # shellcheck disable=SC2046
    kill -TERM $(in_cgroup) 2>/dev/null
    wait $spare $rest 2>/dev/null
  fi
  for _ in $(seq 50); do [ -z "$(in_cgroup)" ] && break; sleep 0.2; done
  # shellcheck disable=SC2046
  kill -KILL $(in_cgroup) 2>/dev/null
  for _ in $(seq 25); do rmdir "$CGROUP" 2>/dev/null && break; [ -d "$CGROUP" ] || break; sleep 0.2; done
  [ ${#logs[@]} -eq 0 ] || rm -f "${logs[@]}"
}
trap stop_background EXIT
trap 'exit 130' INT TERM

if idle_cgroup; then
  spare_log=$(mktemp) rest_log=$(mktemp) sessions_ended=$(mktemp -u)
  logs=("$spare_log" "$rest_log" "$sessions_ended")
  echo "the other tests run beside the simulated sessions, in $CGROUP (their output comes last)"
  in_idle_cgroup "${PYTEST[@]}" "${XDIST[@]}" "${SPARE[@]}" > "$spare_log" 2>&1 9>&- &
  spare=$!
  ALPHAGEN_TESTS_START_AFTER=$sessions_ended in_idle_cgroup "${PYTEST[@]}" "${XDIST[@]}" "${REST[@]}" \
    > "$rest_log" 2>&1 9>&- &
  rest=$!
else
  echo "no cgroup for spare CPU here: the spare_cpu modules and unit tests run first, on their own"
  "${PYTEST[@]}" "${XDIST[@]}" "${SPARE[@]}" 9>&- || status=1
fi

# only their folder: collecting the whole suite first would delay the first session by seconds
"${PYTEST[@]}" -m simulated_session tests/sessions 9>&- || status=1

if [ -n "$rest" ]; then
  # From here on the other tests share the CPU as equals: starved beside the rest, the
  # spare_cpu modules' own waits (a killed process reaped within a minute) would fail.
  weigh normal
  touch "$sessions_ended"
  wait "$rest" || status=1
  wait "$spare" || status=1
  spare="" rest=""
  echo "--- the tests held until the sessions ended:"
  cat "$rest_log"
  echo "--- the spare_cpu modules and unit tests:"
  cat "$spare_log"
else
  "${PYTEST[@]}" "${XDIST[@]}" "${REST[@]}" 9>&- || status=1
fi
exit "$status"
