# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The ROS package as colcon builds it, the launch file, package.xml and the set-up script."""
import ast
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
VENV = pathlib.Path(sys.prefix)


def test_package_xml_is_valid_for_rosdep_and_colcon():
    from catkin_pkg.package import parse_package
    package = parse_package(str(ROOT / 'package.xml'))
    package.validate()
    assert package.name == 'tipsv2_ros'
    assert package.get_build_type() == 'ament_cmake'
    names = {dep.name for dep in package.exec_depends + package.build_depends}
    assert {'rclpy', 'sensor_msgs', 'std_msgs', 'rosidl_default_runtime'} <= names


def test_launch_file_declares_its_arguments():
    tree = ast.parse((ROOT / 'launch' / 'perception.launch.py').read_text())
    table = next(node for node in tree.body if isinstance(node, ast.Assign)
                 and node.targets[0].id == 'ARGUMENTS')
    declared = {key.value for key in table.value.keys}
    assert declared == {'image', 'camera_info', 'namespace', 'params_file', 'backend',
                        'image_transport', 'autostart', 'use_sim_time', 'log_level', 'rviz',
                        'fixed_frame'}
    assert any(isinstance(node, ast.Call) and getattr(node.func, 'id', '') ==
               'DeclareLaunchArgument' for node in ast.walk(tree))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions


def test_every_parameter_is_in_the_yaml_with_a_comment():
    import yaml

    from tipsv2_ros.ros.params import specs
    declared = specs()
    text = (ROOT / 'config' / 'perception.yaml').read_text()
    params = yaml.safe_load(text)['/**/tipsv2_perception']['ros__parameters']
    assert set(params) == set(declared)
    lines = text.splitlines()
    for name in declared:
        index = next(i for i, line in enumerate(lines) if line.strip().startswith(name + ':'))
        commented = '#' in lines[index] or lines[index - 1].strip().startswith('#')
        assert commented, f'{name} has no comment in config/perception.yaml'


@pytest.mark.slow
def test_colcon_style_install_has_everything(tmp_path):
    """Configure, build and install with the Python package on, as colcon does on ROS."""
    if not shutil.which('cmake'):
        pytest.skip('cmake not found')
    # A copy of the sources: CMake refuses imported include paths inside the source tree,
    # which is where .venv lives in a checkout.
    source, prefix, build = tmp_path / 'src', tmp_path / 'install', tmp_path / 'build'
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        '.venv', '.git', 'build', '__pycache__', '*.egg-info', 'tests'))
    env = {**os.environ, 'AMENT_PREFIX_PATH': str(VENV), 'CMAKE_PREFIX_PATH': str(VENV)}
    for command in (
            ['cmake', '-S', str(source), '-B', str(build), f'-DCMAKE_INSTALL_PREFIX={prefix}',
             f'-DPython3_EXECUTABLE={sys.executable}', '-DBUILD_TESTING=OFF'],
            ['cmake', '--build', str(build), f'-j{os.cpu_count()}'],
            ['cmake', '--install', str(build)]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    site = next(prefix.glob('lib/python3*/site-packages'))
    share = prefix / 'share' / 'tipsv2_ros'
    for path in [share / 'launch' / 'perception.launch.py', share / 'config' /
                 'perception.yaml', share / 'config' / 'perception.rviz', share /
                 'package.xml', prefix / 'lib' / 'tipsv2_ros' / 'perception_node',
                 prefix / 'lib' / 'tipsv2_ros' / 'tipsv2', site / 'tipsv2_ros' / 'ros' /
                 'node.py', site / 'tipsv2_ros' / 'samples' / 'room_00.png']:
        assert path.exists(), path
    assert os.access(prefix / 'lib' / 'tipsv2_ros' / 'perception_node', os.X_OK)
    # Our __init__ (not rosidl's empty one) must win, and the generated types must import.
    probe = ('import tipsv2_ros, tipsv2_ros.ros.node, tipsv2_ros.ros.launch_args; '
             'from tipsv2_ros.srv import SetLabels; '
             'print(tipsv2_ros.__file__)')
    env = {**os.environ, 'PYTHONPATH': str(site),
           'LD_LIBRARY_PATH': f'{prefix / "lib"}:{os.environ.get("LD_LIBRARY_PATH", "")}'}
    result = subprocess.run([sys.executable, '-c', probe], env=env, cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith(str(site))
    assert 'extend_path' in (site / 'tipsv2_ros' / '__init__.py').read_text()


def test_setup_script_is_idempotent_and_fast(tmp_path):
    """A run with everything in place only checks the stamps, from any directory."""
    for _ in range(2):  # the first run installs whatever changed since the last one
        result = subprocess.run(['bash', str(ROOT / 'scripts' / 'setup.sh'), '--test'],
                                capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith('[setup] ready')
    assert 'installing' not in result.stdout and 'building' not in result.stdout


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / 'README.md').read_text().split('```bash\n', 1)[1].split('```', 1)[0]
    commands = [line.split('#')[0].strip() for line in readme.splitlines() if line.strip()]
    assert commands == ['scripts/demo.sh', 'scripts/test.sh']
    ci = [line.strip() for line in (ROOT / '.ci' / 'run').read_text().splitlines()
          if line.strip() and not line.startswith('#')]
    assert ci[-1] == commands[1]
    assert all(os.access(ROOT / c, os.X_OK) for c in (*commands, '.ci/run'))


def test_the_test_command_fails_when_no_test_is_collected(tmp_path):
    result = subprocess.run([str(ROOT / 'scripts' / 'test.sh'), 'tests/test_lint.py', '-k',
                             'no_such_test_anywhere'],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 5, result.stdout[-2000:] + result.stderr[-2000:]
    assert 'pytest collected no tests' in result.stderr
