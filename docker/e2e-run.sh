#!/bin/sh
# The entrypoint of the e2e image (docker/e2e.Dockerfile): runs each test executable of the
# operator's e2e suite in turn, one test at a time (--test-threads 1: each test runs its own
# brokers in the cluster), and every one of them even when an earlier one failed. Arguments
# are handed to each executable (a test name filter, --nocapture). Exits 1 if any failed.
#
# E2E_TESTS: the executables to run (default: operated_cluster operated_failover
# operated_refusal), in E2E_DIR
# (default: /e2e).
set -u

dir="${E2E_DIR:-/e2e}"
tests="${E2E_TESTS:-operated_cluster operated_failover operated_refusal}"
failed=""
summary=""

for test in $tests; do
  printf '\n==================== %s: start (%s) ====================\n' \
    "$test" "$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  start=$(date +%s)
  if [ -x "$dir/$test" ]; then
    "$dir/$test" --test-threads 1 "$@"
    rc=$?
  else
    echo "e2e-run: $dir/$test is not an executable" >&2
    rc=127
  fi
  elapsed=$(($(date +%s) - start))
  if [ "$rc" -eq 0 ]; then
    result="passed"
  else
    result="FAILED (exit $rc)"
    failed="$failed $test"
  fi
  printf '==================== %s: %s in %ss ====================\n' "$test" "$result" "$elapsed"
  summary="$summary$(printf '  %-24s %s in %ss' "$test" "$result" "$elapsed")
"
done

printf '\n==================== summary ====================\n%s' "$summary"
if [ -n "$failed" ]; then
  echo "e2e-run: failed:$failed" >&2
  exit 1
fi
echo "e2e-run: all passed"
