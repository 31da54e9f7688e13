# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The tipsv2_ros Python package: library, command-line tools and (with ROS) the node.

On a ROS 2 install, CMakeLists.txt (colcon) is the build; this file keeps a plain
``pip install .`` working without ROS for the library and the ``tipsv2`` tools.
"""
from setuptools import find_packages, setup

setup(
    # Not 'tipsv2_ros': that distribution name belongs to the CMake (rosidl) install of the
    # generated interfaces, which a pip reinstall under the same name would remove.
    name='tipsv2',
    version='0.1.0',
    description='Depth, surface normals and open-vocabulary segmentation from TIPSv2 for ROS 2',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['tipsv2_ros', 'tipsv2_ros.*']),
    package_data={'tipsv2_ros': ['samples/*.png', 'samples/*.md', 'samples/*.json',
                                 'samples/*.npz', 'model/assets/*']},
    # numpy 1.21 is what Humble (Ubuntu 22.04) ships; the code uses nothing newer.
    install_requires=['numpy>=1.21', 'torch>=2.3', 'sentencepiece', 'safetensors', 'pillow',
                      'tqdm'],
    extras_require={'onnx': ['onnx', 'onnxruntime', 'onnxscript']},
    entry_points={'console_scripts': [
        'tipsv2 = tipsv2_ros.cli.main:main',
        'perception_node = tipsv2_ros.cli.main:perception_node',
    ]},
)
