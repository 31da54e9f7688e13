#!/usr/bin/env bash
# The main job: runs the perception node on the bundled sample frames over real DDS and
# writes depth, normals and segmentation views plus a summary (sets up .venv/ first).
# Default: the real TIPSv2 B/14 weights, downloaded on first use.
# Extra arguments go to `tipsv2 demo`, e.g. scripts/demo.sh --offline --out /tmp/demo.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh"
. "$ROOT/scripts/env.sh"
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( RANDOM % 100 + 1 ))}
exec tipsv2 demo "$@"
