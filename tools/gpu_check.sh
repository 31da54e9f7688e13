#!/usr/bin/env bash
# The first run on a GPU machine, in one command: installs what it needs (PyTorch for the
# driver's CUDA, TensorRT and onnxruntime-gpu; scripts/setup.sh --tensorrt), prints the GPU,
# driver, CUDA, torch, TensorRT and onnxruntime versions, builds the TensorRT engines of B/14
# random weights at 448 and at 98x126 (a size whose batch views are misaligned) with their
# parity gates, dumps the engine inspector's layer precisions and fused-attention layers,
# runs the GPU tests (tests/test_tensorrt.py), and `tipsv2 bench --device cuda` for P4, P5
# and the fps with 0-3 heads. Everything goes under one folder; summary.md says per step
# whether it ran, failed (and why) or could not run (and why). About 8 minutes on a
# data-centre GPU with a fast network (most of it downloads and the first engine builds).
#
# Usage: tools/gpu_check.sh [--cpu] [--out DIR]
#   --cpu      the CPU side only (no GPU needed): set-up check, versions, the ONNX export and
#              mixed-precision graphs of the engine step (tiny random weights, 98x126), the
#              GPU tests (they report why they skip) and the bench's GPU rows (skipped)
#   --out DIR  the output folder (default gpu_check_out/<UTC time>)
# Environment: TIPSV2_TORCH (default: from the driver's CUDA version), TIPSV2_TENSORRT.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CPU=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) CPU=1 ;;
    --out) OUT=$2; shift ;;
    *) printf 'usage: tools/gpu_check.sh [--cpu] [--out DIR]\n' >&2; exit 2 ;;
  esac
  shift
done
OUT=${OUT:-$ROOT/gpu_check_out/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
: > "$OUT/steps.jsonl"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
START=$(date +%s)
cd "$ROOT"

say() { printf '[gpu_check] %s\n' "$*"; }
# record STEP STATUS DETAIL: one JSON line per step (tools/gpu_check.py adds its own).
record() {
  local detail=${3//\\/\\\\}
  detail=${detail//\"/\\\"}
  detail=$(printf '%s' "$detail" | tr '\n\t' '  ' | cut -c1-400)
  printf '{"step": "%s", "status": "%s", "detail": "%s", "seconds": %s}\n' "$1" "$2" \
    "$detail" "$(( $(date +%s) - STEP_START ))" >> "$OUT/steps.jsonl"
  say "$1: $2${3:+ - $detail}"
}
begin() { STEP_START=$(date +%s); say "--- $1 ($(( $(date +%s) - START )) s so far)"; }

# --- 1. install -----------------------------------------------------------------------------
begin install
export TIPSV2_CACHE="$OUT/tipsv2-cache"  # engines, ONNX files: all under the output folder
GPU=0
if [ "$CPU" = 0 ] && command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; then
  GPU=1
fi
if [ "$CPU" = 0 ] && [ "$GPU" = 0 ]; then
  say "no NVIDIA GPU (nvidia-smi missing or failing): running the CPU side only"
  CPU=1
fi
if [ "$GPU" = 1 ] && [ -z "${TIPSV2_TORCH:-}" ]; then
  cuda=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -1)
  read -r major minor <<< "${cuda:-12 6}"
  if [ "$major" -ge 13 ]; then TIPSV2_TORCH=cu130
  elif [ "$major" = 12 ] && [ "$minor" -ge 8 ]; then TIPSV2_TORCH=cu128
  else TIPSV2_TORCH=cu126; fi
  export TIPSV2_TORCH
  say "driver supports CUDA ${major}.${minor}: TIPSV2_TORCH=$TIPSV2_TORCH"
fi
if [ "$CPU" = 1 ]; then
  if scripts/setup.sh > "$OUT/install.log" 2>&1; then
    record install ok "scripts/setup.sh (CPU side)"
  else
    record install failed "scripts/setup.sh failed: $(tail -3 "$OUT/install.log")"
    exit 1
  fi
elif timeout 480 scripts/setup.sh --tensorrt > "$OUT/install.log" 2>&1; then
  record install ok "scripts/setup.sh --tensorrt (TIPSV2_TORCH=$TIPSV2_TORCH)"
else
  record "install tensorrt" failed "scripts/setup.sh --tensorrt: $(grep -E 'ERROR|error' "$OUT/install.log" | tail -2)"
  say "TensorRT could not be installed; continuing with PyTorch $TIPSV2_TORCH only"
  if ! timeout 480 scripts/setup.sh >> "$OUT/install.log" 2>&1; then
    record install failed "scripts/setup.sh failed too: $(tail -3 "$OUT/install.log")"
    exit 1
  fi
fi
if [ "$CPU" = 0 ]; then  # pytest for the GPU tests (the CPU side finds it installed)
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/test.txt \
    >> "$OUT/install.log" 2>&1 || say "test dependencies not installed (see install.log)"
fi
# shellcheck disable=SC1091
. scripts/env.sh

# --- 2. versions ----------------------------------------------------------------------------
begin versions
if python tools/gpu_check.py versions --out "$OUT"; then
  record versions ok "versions.json"
else
  record versions failed "tools/gpu_check.py versions"
fi

# --- 3. engines, parity gates, inspector ---------------------------------------------------
begin engines
if [ "$CPU" = 1 ]; then
  timeout 600 python tools/gpu_check.py engines --out "$OUT" --variant tiny --size 98x126 --cpu
else
  timeout 420 python tools/gpu_check.py engines --out "$OUT" --variant b14 --size 448 \
    --size 98x126
fi
rc=$?
[ $rc = 124 ] && record engines failed "timed out"

# --- 4. GPU tests ---------------------------------------------------------------------------
begin tests
if timeout 300 python -m pytest tests/test_tensorrt.py -m 'not slow' -rs -q \
    --junitxml="$OUT/test_tensorrt.xml" > "$OUT/test_tensorrt.log" 2>&1; then
  skipped=$(grep -c '^SKIPPED' "$OUT/test_tensorrt.log")
  record "tests/test_tensorrt.py" "$([ "$skipped" = 0 ] && echo ok || echo skipped)" \
    "$(tail -1 "$OUT/test_tensorrt.log")$( [ "$skipped" = 0 ] || echo "; $(grep -m1 '^SKIPPED' "$OUT/test_tensorrt.log")")"
else
  record "tests/test_tensorrt.py" failed "$(tail -1 "$OUT/test_tensorrt.log") (test_tensorrt.log)"
fi

# --- 5. bench: P4, P5, fps with 0-3 heads ----------------------------------------------------
begin bench
if [ "$CPU" = 1 ]; then
  W="$OUT/weights-tiny"
  bench=(tipsv2 bench --device cpu --only P4,P5,fps --iterations 1 --input-size 98x126
         --vision-weights "$W/vision.npz" --text-weights "$W/text.npz" --tokenizer
         "$W/tokenizer.model" --depth-head "$W/depth_dpt.zip" --normals-head
         "$W/normals_dpt.zip")
else
  backend=tensorrt
  python -c 'import tensorrt' 2>/dev/null || backend=torch
  bench=(tipsv2 bench --device cuda --backend "$backend" --only P4,P5,fps --iterations 20
         --warmup 3 --random-dir "$OUT/weights-b14" --input-size 448)
fi
if timeout 300 "${bench[@]}" --out "$OUT/bench.md" > "$OUT/bench.log" 2>&1; then
  cat "$OUT/bench.md"
  if grep -q -i -E 'skip|not measured' "$OUT/bench.md"; then
    record bench skipped "rows not measured: $(grep -i -m1 -o -E '(skip|not measured)[^|]*' "$OUT/bench.md")"
  else
    record bench ok "bench.md"
  fi
else
  record bench failed "$(tail -2 "$OUT/bench.log")"
fi

# --- 6. summary ------------------------------------------------------------------------------
STEP_START=$START
elapsed=$(( $(date +%s) - START ))
python - "$OUT" "$elapsed" <<'PYEOF'
import json, pathlib, sys
out, elapsed = pathlib.Path(sys.argv[1]), int(sys.argv[2])
steps = [json.loads(line) for line in (out / 'steps.jsonl').read_text().splitlines() if line]
lines = [f'# GPU check ({elapsed} s, {"within" if elapsed <= 480 else "OVER"} the 8 minutes)', '',
         '| step | status | detail |', '|---|---|---|']
lines += [f'| {s["step"]} | {s["status"]} | {s["detail"].replace("|", "/")} |' for s in steps]
not_run = [s for s in steps if s['status'] != 'ok']
lines += ['', 'Could not run or failed: ' + (', '.join(s['step'] for s in not_run) or 'nothing')]
(out / 'summary.md').write_text('\n'.join(lines) + '\n')
print('\n'.join(lines))
PYEOF
say "everything is in $OUT"
grep -q '"status": "failed"' "$OUT/steps.jsonl" && exit 1
exit 0
