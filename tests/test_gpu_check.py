# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""tools/gpu_check.sh --cpu: the one-command GPU check runs its CPU side and says what not.

On a GPU machine the same script installs TensorRT, builds and gates the B/14 engines and
benchmarks; here every step must still run or say clearly why it could not.
"""
import json
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_cpu_side_runs_and_names_what_it_could_not_run(tmp_path):
    out = tmp_path / 'check'
    result = subprocess.run([str(ROOT / 'tools' / 'gpu_check.sh'), '--cpu', '--out', str(out)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    steps = {}
    for line in (out / 'steps.jsonl').read_text().splitlines():
        record = json.loads(line)
        steps[record['step']] = record
    assert steps['install']['status'] == 'ok' and steps['versions']['status'] == 'ok'
    versions = json.loads((out / 'versions.json').read_text())
    assert {'torch', 'tensorrt', 'onnxruntime', 'nvidia_smi', 'cuda_available'} <= set(versions)
    engines = steps['engines tiny 98x126']
    assert engines['status'] == 'skipped' and 'no CUDA device' in engines['detail']
    mixed = json.loads((out / 'engines-98x126.json').read_text())['mixed']
    assert mixed['depth fp16']['expectations'] == 1
    assert all(entry['expectations_fp32'] for entry in mixed.values())
    tests = steps['tests/test_tensorrt.py']
    assert tests['status'] == 'skipped' and 'no CUDA GPU visible to torch' in tests['detail']
    assert steps['bench']['status'] == 'skipped' and 'no CUDA device' in steps['bench']['detail']
    assert 'P4: TensorRT fp16 / our eager fp32' in (out / 'bench.md').read_text()
    summary = (out / 'summary.md').read_text()
    assert 'Could not run or failed: engines tiny 98x126, tests/test_tensorrt.py, bench' in summary
    assert (out / 'gpu_check.log').stat().st_size > 0
