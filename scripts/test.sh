#!/usr/bin/env bash
# Runs the test suite (sets up .venv/ first when needed). Extra arguments go to pytest,
# e.g. scripts/test.sh -k conversions. Exits non-zero when pytest collects no tests.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh" --test
. "$ROOT/scripts/env.sh"
# A private DDS domain per run, so parallel runs on one machine never see each other.
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( RANDOM % 100 + 1 ))}
cd "$ROOT"
rc=0
python -m pytest "$@" || rc=$?
[ "$rc" -eq 5 ] && echo "[test] ERROR: pytest collected no tests" >&2
exit "$rc"
