# Environment for running the node and tests from the set-up virtual environment.
# Source it after scripts/setup.sh: `. scripts/env.sh`.
_TIPSV2_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIRTUAL_ENV="$_TIPSV2_ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
# ament_index_python (and the cmake build) find packages through this.
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# Kilted ignores ROS_LOCALHOST_ONLY; this keeps discovery on this host.
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
# Shared memory with a segment big enough for camera frames: with Fast DDS's default
# 512 KiB segment, best-effort images do not cross processes.
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$_TIPSV2_ROOT/config/fastdds_shm.xml}
export ROS_LOG_DIR=${ROS_LOG_DIR:-${TMPDIR:-/tmp}/tipsv2_ros_log}
unset _TIPSV2_ROOT
