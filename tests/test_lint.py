# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Style and layout rules: ament_flake8/pep257, the copyright line, import boundaries."""
import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYTHON_DIRS = ['tipsv2_ros', 'tests', 'launch', 'tools']
ROS_MODULES = {'rclpy', 'sensor_msgs', 'std_msgs', 'std_srvs', 'builtin_interfaces',
               'rcl_interfaces', 'vision_msgs', 'cv_bridge', 'launch', 'launch_ros'}
BACKEND_MODULES = {'tensorrt', 'onnx', 'onnxruntime', 'onnxscript', 'tritonclient', 'pytriton'}


def _python_files():
    for name in PYTHON_DIRS:
        yield from sorted((ROOT / name).rglob('*.py'))


def _imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def _imported_roots(path):
    return (module.split('.')[0] for module in _imported_modules(path))


def test_flake8_ament_rules():
    files = [str(p) for p in _python_files()] + [str(ROOT / 'setup.py')]
    result = subprocess.run([sys.executable, '-m', 'flake8', *files], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_copyright_line():
    missing = [str(p.relative_to(ROOT)) for p in _python_files()
               if p.stat().st_size and 'Copyright' not in p.read_text().split('\n', 2)[0]]
    assert not missing, f'files without the copyright line: {missing}'


@pytest.mark.parametrize('path', sorted((ROOT / 'tipsv2_ros').rglob('*.py')),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_import_boundaries(path):
    rel = path.relative_to(ROOT / 'tipsv2_ros').parts
    roots = set(_imported_roots(path))
    if rel[0] != 'ros':  # the CLI reaches ROS through tipsv2_ros.ros, lazily
        assert not roots & ROS_MODULES, f'ROS imports outside ros/: {roots & ROS_MODULES}'
        messages = {'tipsv2_ros.msg', 'tipsv2_ros.srv'} & set(_imported_modules(path))
        assert not messages, f'message imports outside ros/: {messages}'
    if rel[0] == 'cli':
        top = {n.module for n in ast.parse(path.read_text()).body
               if isinstance(n, ast.ImportFrom) and n.module}
        assert not {m for m in top if m.startswith('tipsv2_ros.ros')}, 'import ROS lazily'
    if rel[0] in ('model', 'processing.py', 'colour.py'):
        assert not roots & (BACKEND_MODULES | {'cv2'}), 'model code is pure PyTorch'
    if rel[0] == 'runtime':
        allowed = {'onnx_backend.py': {'onnxruntime', 'onnx'},
                   'export.py': {'onnx', 'onnxruntime', 'onnxscript'},
                   'onnx_precision.py': {'onnx'}, 'onnx_int8.py': {'onnx', 'onnxruntime'},
                   'triton_backend.py': {'tritonclient'},
                   'triton_transport.py': {'tritonclient'}, 'triton_serve.py': {'pytriton'}}
        if rel[-1].startswith('tensorrt_'):  # tensorrt_build, tensorrt_engine, ...
            allowed[rel[-1]] = {'tensorrt'}
        extra = roots & BACKEND_MODULES - allowed.get(rel[-1], set())
        assert not extra, f'{rel[-1]} imports {extra}: keep them in their backend module'


def test_files_stay_small():
    # About 300 lines of code: 350 lines, or 14 kB for files of long lines.
    big = [f'{p.relative_to(ROOT)} ({len(text.splitlines())} lines, {len(text)} bytes)'
           for p in (ROOT / 'tipsv2_ros').rglob('*.py')
           if len((text := p.read_text()).splitlines()) > 350 or len(text) > 14_000]
    assert not big, f'split these by concept: {big}'
