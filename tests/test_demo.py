# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""`tipsv2 demo`: the node and the player over DDS on the bundled frames, end to end."""
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]
TIPSV2 = os.path.join(os.path.dirname(sys.executable), 'tipsv2')
FRAMES = len(list((pathlib.Path(__file__).parents[1] / 'tipsv2_ros' / 'samples')
                  .glob('room_*.png')))


def _demo(out, *args, env=None):
    return subprocess.run([TIPSV2, 'demo', '--out', str(out), '--input-size', '112', *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def _check_outputs(out, result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for view in ('depth', 'normals', 'segmentation'):
        assert len(list(out.glob(f'frame_*_{view}.png'))) == FRAMES, view
    summary = (out / 'summary.txt').read_text()
    assert f'{FRAMES}/{FRAMES} frames' in summary and 'fps' in summary
    assert 'latency' in summary and 'meaningless' in summary


def test_offline_demo_writes_views_marked_meaningless(tmp_path, ros):
    result = _demo(tmp_path, '--offline')
    _check_outputs(tmp_path, result)
    assert result.stdout.count('MEANINGLESS') >= 2  # said at the start and at the end


def test_demo_without_internet_says_so_and_still_runs(tmp_path, ros):
    env = {'TIPSV2_CACHE': str(tmp_path / 'empty-cache'),
           'TIPSV2_WEIGHTS_BASE_URL': 'http://127.0.0.1:9'}  # nothing listens there
    result = _demo(tmp_path / 'out', env=env)
    _check_outputs(tmp_path / 'out', result)
    lines = result.stdout.splitlines()
    notices = [i for i, line in enumerate(lines) if 'Could not get the TIPSv2' in line]
    assert len(notices) == 2 and notices[0] < len(lines) // 2 < notices[1]
    assert 'tipsv2 download b14' in result.stdout
