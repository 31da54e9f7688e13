# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2 bench`` on the tiny model: every row is there and every number is sane.

No timing is asserted (shared CI machines are too noisy); the full B/14 table is in
docs/benchmark.md. The onnxruntime row runs on a stand-in backend here, so that the smoke
test does not pay for three ONNX exports (tests/test_export.py covers those).
"""
import math

import pytest

from tipsv2_ros.bench import flops, runner
from tipsv2_ros.model.config import resolve_config
from tipsv2_ros.ros.params import runtime_config

pytest.importorskip('transformers')

STAGES = ('pre-processing', 'inference, ', 'zero-shot logits', 'post-processing',
          'Pipeline.run total', 'colour views', 'inference per head (torch fp32): encoder (',
          'inference per head (torch fp32): encoder + segmentation',
          'inference per head (torch fp32): depth head',
          'inference per head (torch fp32): normals head', 'message to array',
          'message creation', 'publish', 'node end to end', 'in-process inference',
          'semantic point cloud creation')
RATIOS = ('P0:', 'P0 context', 'P1:', 'P2:', 'P2 bf16', 'P3:', 'P6 cold:', 'P6 cached:',
          'P6 hiccup:', 'P7:', 'zero-shot slide / whole:', 'P4:', 'P5:', 'fps',
          'semantic point cloud: bytes per frame', 'query latency, cached phrase',
          'query latency, uncached phrase')


@pytest.fixture(scope='module')
def bench(tiny_params, monkeypatch_module):
    from tipsv2_ros.runtime import backends
    from tipsv2_ros.runtime.backends.torch_backend import TorchBackend

    real_create = backends.create

    def create(name, model, input_size, tasks, *args, **kwargs):
        if name == 'onnxruntime':
            return TorchBackend(model, input_size, tasks, 'fp32')
        return real_create(name, model, input_size, tasks, *args, **kwargs)
    monkeypatch_module.setattr(runner.backends, 'create', create)
    values = {**tiny_params, 'model.input_size': '112', 'device': 'cpu', 'precision': 'auto'}
    config = runner.BenchConfig(runtime_config(values), 'random tiny weights', iterations=2,
                                warmup=1,
                                frame_size=(120, 160), start_timeout=120.0)
    return runner.run(config, log=lambda text: None)


@pytest.fixture(scope='module')
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_every_row_is_in_the_table(bench):
    table, rows = bench
    names = [row.name for row in rows]
    for prefix in STAGES + RATIOS:
        assert any(name.startswith(prefix) for name in names), prefix
        assert prefix.split(':')[0] in table
    assert table.startswith('### tipsv2 bench: tiny') and '**cpu**' in table


def test_numbers_are_sane(bench):
    _, rows = bench
    for row in rows:
        if row.note.startswith('not measured'):
            assert row.name.startswith(('P4', 'P5', 'fps')), (row.name, row.note)
            continue
        if not math.isnan(row.p50):
            assert 0 < row.p50 <= row.p90 < 600, (row.name, row.p50, row.p90)
        if row.target and row.passed is not None:
            value = float(row.value.split()[0].lstrip('+'))
            assert value > 0 or row.name.startswith('P6 hiccup'), (row.name, row.value)
    transformers_row = next(r for r in rows if r.name.startswith('reference: transformers'))
    assert 'depth max diff' in transformers_row.note  # the same function on both sides
    for difference in transformers_row.note.split('max diff ')[1:]:
        assert float(difference.split(',')[0]) < 1e-3


def test_flop_formula_matches_the_research_counts():
    b14 = resolve_config('b14')
    assert flops.encoder_flops(b14, (448, 448)) / 1e9 == pytest.approx(214.0, abs=0.05)
    heads = {t: flops.dpt_head_flops(b14, (448, 448), t) / 1e9
             for t in ('depth', 'normals', 'segmentation')}
    assert heads == pytest.approx({'depth': 228.3, 'normals': 219.7, 'segmentation': 224.7},
                                  abs=0.05)


def test_only_rejects_unknown_rows(capsys):
    from tipsv2_ros.cli.main import main
    assert main(['bench', '--only', 'P9']) == 2
    assert '--only takes a subset' in capsys.readouterr().err
