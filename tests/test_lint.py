# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Style and layout rules: ament_flake8/pep257, the copyright line, import boundaries."""
import ast
import pathlib
import subprocess
import sys
import warnings

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
    if rel[0] != 'ros' and rel[:2] != ('bench', 'dds'):  # the DDS part of the benchmark
        assert not roots & ROS_MODULES, f'ROS imports outside ros/: {roots & ROS_MODULES}'
        messages = {'tipsv2_ros.msg', 'tipsv2_ros.srv'} & set(_imported_modules(path))
        assert not messages, f'message imports outside ros/: {messages}'
    if rel[0] == 'cli':
        top = {n.module for n in ast.parse(path.read_text()).body
               if isinstance(n, ast.ImportFrom) and n.module}
        assert not {m for m in top if m.startswith('tipsv2_ros.ros')}, 'import ROS lazily'
    if rel[0] in ('model', 'tasks.py') or rel[:3] == ('runtime', 'frame', 'colour.py'):
        assert not roots & (BACKEND_MODULES | {'cv2'}), 'model code is pure PyTorch'
    # Backend libraries stay in the backends, the export and the Triton serving code.
    if rel[:2] not in {('runtime', 'backends'), ('runtime', 'export'), ('runtime', 'serving')}:
        extra = roots & BACKEND_MODULES
        assert not extra, f'{"/".join(rel)} imports {extra}: keep them in their backend module'


# The layers, lowest first: a module may import its own layer and the ones below.
LAYERS = (('tasks', 'weights', 'fetch'), ('model',), ('runtime',), ('ros',), ('bench',),
          ('cli',))


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _package_imports():
    """Return module -> the tipsv2_ros modules it imports (lazy imports included)."""
    modules = {_module_name(p): p for p in (ROOT / 'tipsv2_ros').rglob('*.py')}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == '__init__.py' else name.rpartition('.')[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1]
                                    + ([base] if base else []))
                targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in modules else base
                           for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def _layer(module: str) -> int:
    part = module.split('.')[1] if '.' in module else ''
    return next((i for i, names in enumerate(LAYERS) if part in names), -1)


def _upward(graph):
    return sorted(f'{module} imports {target}' for module, targets in graph.items()
                  for target in targets if _layer(module) >= 0 and _layer(target) > _layer(module))


def _circles(graph):
    """Return the import cycles, ignoring a package importing its own submodules."""
    circles = set()

    def visit(module, stack):
        for target in sorted(graph.get(module, ())):
            if target in stack:
                cycle = stack[stack.index(target):] + [target]
                if not all(step.startswith(cycle[0] + '.') for step in cycle[1:-1]):
                    circles.add(' -> '.join(cycle))
            elif target not in done:
                done.add(target)
                visit(target, stack + [target])
    done = set()
    for module in sorted(graph):
        if module not in done:
            done.add(module)
            visit(module, [module])
    return sorted(circles)


def test_imports_flow_one_way():
    """Tasks, model <- runtime <- ros <- bench <- cli: no module imports a layer above it."""
    upward = _upward(_package_imports())
    assert not upward, 'imports against the layering:\n' + '\n'.join(upward)


def test_no_import_circles():
    circles = _circles(_package_imports())
    assert not circles, 'import circles:\n' + '\n'.join(circles)


def test_import_checks_catch_violations():
    """The checks are not vacuous: an upward import and a circle are both reported."""
    graph = _package_imports()
    assert 'tipsv2_ros.runtime.backends.base' in graph[
        'tipsv2_ros.runtime.backends.torch_backend']
    bad = {'tipsv2_ros.model.tips': {'tipsv2_ros.runtime.startup'},
           'tipsv2_ros.runtime.startup': {'tipsv2_ros.ros.node'},
           'tipsv2_ros.ros.node': {'tipsv2_ros.model.tips'}}
    assert _upward(bad) == ['tipsv2_ros.model.tips imports tipsv2_ros.runtime.startup',
                            'tipsv2_ros.runtime.startup imports tipsv2_ros.ros.node']
    assert _circles(bad) == ['tipsv2_ros.model.tips -> tipsv2_ros.runtime.startup -> '
                             'tipsv2_ros.ros.node -> tipsv2_ros.model.tips']


def test_large_files_are_reported():
    # One concept per module is the rule, not a size; this only points at modules that grew
    # past ~500 lines, which often hold more than one.
    big = [f'{p.relative_to(ROOT)} ({len(p.read_text().splitlines())} lines)'
           for p in (ROOT / 'tipsv2_ros').rglob('*.py') if len(p.read_text().splitlines()) > 500]
    if big:
        warnings.warn(f'large modules (one concept each?): {", ".join(big)}')
