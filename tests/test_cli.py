# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The `tipsv2` command: instant help, and `tipsv2 infer` checked against the golden set."""
import subprocess
import sys

from golden import file_flags, GOLDEN
import numpy as np
import pytest

from tipsv2_ros.cli.main import main, SUBCOMMANDS


def test_help_lists_every_command_without_loading_torch():
    probe = ('import sys; from tipsv2_ros.cli.main import build_parser; build_parser(); '
             'print(sorted(m for m in ("torch", "rclpy") if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'
    help_text = subprocess.run([sys.executable, '-m', 'tipsv2_ros.cli.main', '--help'],
                               capture_output=True, text=True).stdout
    for name in SUBCOMMANDS:
        assert f'    {name} ' in help_text, name


@pytest.mark.parametrize('index, size', [(0, '112'), (1, '98x126')])
def test_infer_save_raw_reproduces_the_golden_arrays(tmp_path, index, size, capsys):
    raw = tmp_path / 'raw.npz'
    argv = ['infer', str(GOLDEN / f'image_{index}.png'), '--input-size', size,
            *file_flags('vision_weights', 'text_weights', 'tokenizer', 'depth_head',
                        'normals_head', 'segmentation_head'),
            '--labels', 'cat,dog,floor', '--out', str(tmp_path), '--save-raw', str(raw)]
    assert main(argv) == 0
    for view in ('depth', 'normals', 'segmentation'):
        assert (tmp_path / f'image_{index}_{view}.png').is_file()
    ours, golden = np.load(raw), np.load(GOLDEN / 'expected.npz')
    compared = 0
    for key in ours.files:
        reference = golden.get(f'{key}_{index}', golden.get(key))
        if reference is None or ours[key].dtype.kind != 'f':
            continue
        scale = max(1.0, float(np.abs(reference).max()))
        assert np.abs(ours[key] - reference).max() <= 1e-4 * scale, key
        compared += 1
    assert compared >= 20
    np.testing.assert_array_equal(ours['text_ids'], golden['text_ids'])
    np.testing.assert_array_equal(ours['image'], golden[f'image_{index}'])


def test_infer_slide_mode_reproduces_the_golden_slide_probabilities(tmp_path, capsys):
    """The official sliding windows (70 px every 42 px) on image 1 at its own size."""
    raw = tmp_path / 'raw.npz'
    argv = ['infer', str(GOLDEN / 'image_1.png'), '--zero-shot-mode', 'slide',
            '--window', '70', '--stride', '42', '--input-size', '98x126',
            *file_flags('vision_weights', 'text_weights', 'tokenizer', 'depth_head'),
            '--labels', 'cat,dog,floor', '--out', str(tmp_path), '--save-raw', str(raw)]
    assert main(argv) == 0
    assert 'sliding windows 70 px every 42 px (98x126)' in capsys.readouterr().out
    ours, golden = np.load(raw), np.load(GOLDEN / 'expected.npz')
    expected = golden['zeroshot_slide_probs_1']
    assert ours['zeroshot_slide_probs'].shape == expected.shape
    assert np.abs(ours['zeroshot_slide_probs'] - expected).max() <= 1e-4
    np.testing.assert_array_equal(ours['zeroshot_slide_side_stride'],
                                  golden['zeroshot_slide_side_stride'])
    # The whole-image arrays of the same run are still the golden ones.
    assert np.abs(ours['zeroshot_probs'] - golden['zeroshot_probs_1']).max() <= 1e-4
    assert (tmp_path / 'image_1_segmentation.png').is_file()


def test_infer_reports_bad_files(tmp_path, capsys):
    missing = tmp_path / 'missing.npz'
    assert main(['infer', str(GOLDEN / 'image_0.png'), '--vision-weights', str(missing),
                 '--depth-head', str(GOLDEN / 'depth_dpt.zip')]) == 1
    assert 'no such file' in capsys.readouterr().err


@pytest.mark.ros
def test_node_takes_ros_arguments_as_its_help_says():
    """``tipsv2 node --ros-args -p …`` reaches rclpy (here: the start-up check of that value)."""
    result = subprocess.run(
        [sys.executable, '-m', 'tipsv2_ros.cli.main', 'node', '--params-file', '',
         '--ros-args', '-p', 'model.input_size:=100', '-r', '__ns:=/tcli'],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'start-up failed: ' in result.stderr and 'multiples of 14' in result.stderr, \
        result.stderr
    result = subprocess.run([sys.executable, '-m', 'tipsv2_ros.cli.main', 'download',
                             '--ros-args', '-p', 'x:=1'], capture_output=True, text=True)
    assert result.returncode == 2 and '--ros-args belongs to `tipsv2 node`' in result.stderr


def test_infer_query_writes_the_heatmap_views(tmp_path, capsys):
    argv = ['infer', str(GOLDEN / 'image_1.png'), '--input-size', '98x126',
            *file_flags('vision_weights', 'text_weights', 'tokenizer'),
            '--labels', 'cat,dog,floor', '--out', str(tmp_path),
            '--query', 'fire extinguisher', '--query', 'dog']
    assert main(argv) == 0
    from PIL import Image
    views = [np.asarray(Image.open(tmp_path / f'image_1_query_{slug}.png'))
             for slug in ('fire-extinguisher', 'dog')]
    for view in views:
        assert view.shape == (98, 126, 3)  # the image size (--output-resolution input)
    assert np.abs(views[0].astype(int) - views[1]).max() > 0
    assert 'image_1_query_dog.png' in capsys.readouterr().out
    assert main(argv[:-4] + ['--query', ' ']) == 1
    assert 'phrases must not be empty or blank' in capsys.readouterr().err
