# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The ROS install path: rosdep keys that exist, every import declared, the launch file.

``rosdep install --from-paths src`` stops at the first key it cannot resolve, so every key
in package.xml must exist in rosdistro for Humble (Ubuntu jammy), Jazzy and Kilted (noble).
The facts below were read from ros/rosdistro at commit 8468e88 (2026-08-22): the system keys
from rosdep/base.yaml and rosdep/python.yaml, the ROS packages from each distribution.yaml.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROSDISTRO_COMMIT = '8468e88ccd523427f9131e39d2af0938f1c298b2'

# rosdep key -> the Ubuntu package it resolves to on jammy and noble (rosdep/python.yaml).
SYSTEM_KEYS = {
    'python3-numpy': 'python3-numpy', 'python3-pil': 'python3-pil',
    'python3-tqdm': 'python3-tqdm', 'python3-venv': 'python3-venv',
    'python3-pytest': 'python3-pytest', 'python3-cryptography': 'python3-cryptography',
}
# Keys that do not exist (or resolve badly) and must not come back.
BAD_KEYS = {
    'python3-sentencepiece-pip': 'not in rosdistro',
    'python3-safetensors-pip': 'not in rosdistro',
    'python3-pytorch-pip': 'pip: torch torchvision (PyPI default CUDA build + torchvision)',
    'python3-yaml': 'unused by the package',
    'std_srvs': 'unused by the package',
}
# ROS package -> released version in (humble, jazzy, kilted) distribution.yaml.
ROS_PACKAGES = {
    'ament_cmake': ('1.3.14', '2.5.6', '2.7.5'),
    'ament_cmake_python': ('1.3.14', '2.5.6', '2.7.5'),
    'ament_index_python': ('1.4.1', '1.8.4', '1.11.4'),
    'diagnostic_msgs': ('4.9.2', '5.3.8', '5.5.3'),
    'launch': ('1.0.14', '3.4.11', '3.8.8'),
    'launch_ros': ('0.19.14', '0.26.12', '0.28.6'),
    'lifecycle_msgs': ('1.2.3', '2.0.4', '2.3.2'),
    'rcl_interfaces': ('1.2.3', '2.0.4', '2.3.2'),
    'rclpy': ('3.3.21', '7.1.11', '9.1.6'),
    'rosidl_default_generators': ('1.2.1', '1.6.1', '1.7.2'),
    'rosidl_default_runtime': ('1.2.1', '1.6.1', '1.7.2'),
    'sensor_msgs': ('4.9.2', '5.3.8', '5.5.3'),
    'std_msgs': ('4.9.2', '5.3.8', '5.5.3'),
    'vision_msgs': ('4.1.1', '4.1.1', '4.2.0'),
}
# Third-party imports the package's code makes, by where a ROS install gets them.
FROM_ROSDEP = {'numpy': 'python3-numpy', 'PIL': 'python3-pil', 'tqdm': 'python3-tqdm',
               'cryptography': 'python3-cryptography',
               'rclpy': 'rclpy', 'rcl_interfaces': 'rcl_interfaces',
               'lifecycle_msgs': 'lifecycle_msgs', 'diagnostic_msgs': 'diagnostic_msgs',
               'sensor_msgs': 'sensor_msgs', 'std_msgs': 'std_msgs',
               'vision_msgs': 'vision_msgs', 'ament_index_python': 'ament_index_python',
               'launch': 'launch', 'launch_ros': 'launch_ros'}
FROM_VENV = {'torch', 'sentencepiece', 'safetensors'}  # requirements/ros-install.txt + torch
# Optional backends and tools, each imported only inside the feature that needs it.
# `tipsv2 bag` (rosbags, mcap, apsw): README says how to add them on a ROS install.
OPTIONAL = {'onnx', 'onnxruntime', 'onnxscript', 'tensorrt', 'tritonclient', 'pytriton',
            'triton_python_backend_utils', 'transformers', 'rosbags', 'mcap', 'apsw'}


def _package():
    from catkin_pkg.package import parse_package
    return parse_package(str(ROOT / 'package.xml'))


def _keys():
    package = _package()
    groups = (package.buildtool_depends, package.build_depends, package.exec_depends,
              package.test_depends, package.build_export_depends)
    return {dep.name for group in groups for dep in group}


def test_every_rosdep_key_exists_in_rosdistro_for_humble_jazzy_and_kilted():
    keys = _keys()
    unknown = keys - set(SYSTEM_KEYS) - set(ROS_PACKAGES)
    assert not unknown, f'keys not checked against rosdistro {ROSDISTRO_COMMIT[:7]}: {unknown}'
    assert not keys & set(BAD_KEYS), {k: BAD_KEYS[k] for k in keys & set(BAD_KEYS)}
    for name in keys & set(ROS_PACKAGES):
        assert all(ROS_PACKAGES[name]), f'{name} is not released in every distribution'


def _third_party_imports():
    """Top-level module names imported anywhere in the package, launch file and scripts."""
    import sys
    files = [*sorted((ROOT / 'tipsv2_ros').rglob('*.py')), ROOT / 'launch' /
             'perception.launch.py', ROOT / 'scripts' / 'perception_node',
             ROOT / 'scripts' / 'tipsv2']
    found = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split('.')[0]
                if name.startswith('rclpy.lifecycle'):  # its services are lifecycle_msgs
                    found.setdefault('lifecycle_msgs', path.relative_to(ROOT))
                if root not in sys.stdlib_module_names and root != 'tipsv2_ros':
                    found.setdefault(root, path.relative_to(ROOT))
    return found


def test_every_third_party_import_is_declared():
    imports = _third_party_imports()
    undeclared = set(imports) - set(FROM_ROSDEP) - FROM_VENV - OPTIONAL
    assert not undeclared, {name: str(imports[name]) for name in undeclared}
    keys = _keys()
    missing = {module: key for module, key in FROM_ROSDEP.items()
               if module in imports and key not in keys}
    assert not missing, f'imported but not in package.xml: {missing}'
    venv = (ROOT / 'requirements' / 'ros-install.txt').read_text()
    assert all(f'{name}==' in venv for name in FROM_VENV - {'torch'})
    # Nothing declared that the code does not use (build tools and tests aside).
    used = {FROM_ROSDEP[m] for m in imports if m in FROM_ROSDEP}
    needed = used | {'ament_cmake', 'ament_cmake_python', 'rosidl_default_generators',
                     'rosidl_default_runtime', 'python3-venv', 'python3-pytest'}
    assert keys <= needed, f'declared but unused: {keys - needed}'


def test_numpy_floor_is_what_humble_ships():
    setup = (ROOT / 'setup.py').read_text()
    assert "'numpy>=1.21'" in setup  # Ubuntu 22.04's python3-numpy is 1.21.5


def test_launch_arguments_become_namespace_parameters_and_ros_arguments():
    from tipsv2_ros.ros import launch_args
    assert launch_args.namespace('') == '/' and launch_args.namespace('/') == '/'
    assert launch_args.namespace('tipsv2') == '/tipsv2'
    assert launch_args.namespace('/robot1/cam/') == '/robot1/cam'
    assert launch_args.parameter_overrides(
        {'use_sim_time': 'true', 'backend': 'torch', 'image_transport': '', 'autostart': '',
         'rviz': 'false'}) == {'use_sim_time': True, 'backend': 'torch'}
    assert launch_args.parameter_overrides(
        {'use_sim_time': 'false', 'image_transport': 'compressed', 'autostart': 'false',
         'rviz': 'true'}) == {'use_sim_time': False, 'image_transport': 'compressed',
                              'autostart': False, 'publish_points': True}
    assert launch_args.ros_arguments({'log_level': 'DEBUG'}) == [
        '--ros-args', '--log-level', 'debug']
    with pytest.raises(ValueError, match='log_level'):
        launch_args.ros_arguments({'log_level': 'loud'})
    with pytest.raises(ValueError, match='use_sim_time'):
        launch_args.parameter_overrides({'use_sim_time': 'maybe'})


def test_launch_file_uses_the_launch_arguments_module():
    tree = ast.parse((ROOT / 'launch' / 'perception.launch.py').read_text())
    declared = next(node for node in tree.body if isinstance(node, ast.Assign)
                    and node.targets[0].id == 'ARGUMENTS')
    names = {key.value for key in declared.value.keys}
    assert {'use_sim_time', 'log_level', 'namespace', 'autostart', 'image_transport',
            'rviz', 'fixed_frame'} <= names
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and getattr(node.value, 'id', '') == 'launch_args'}
    assert used == {'namespace', 'parameter_overrides', 'ros_arguments', 'flag'}
