# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Defaults that differ on a Jetson, whose CPU and GPU share one memory.

On a Jetson (Orin: 8-64 GB shared by the OS, ROS, the camera drivers and the GPU) TensorRT's
default workspace limit (all device memory) and a batch-4 activation allocation take memory
the rest of the robot needs; one camera at a time is the common case. Desktop and
data-centre GPUs keep batch 4 and a larger workspace.
"""
import os
import pathlib

TEGRA_RELEASE = pathlib.Path('/etc/nv_tegra_release')
DEFAULT_MAX_BATCH = {'jetson': 1, 'discrete': 4}
DEFAULT_WORKSPACE_MB = {'jetson': 1024, 'discrete': 4096}


def is_jetson(release_file: os.PathLike = TEGRA_RELEASE) -> bool:
    """Whether this is a Jetson (L4T writes ``/etc/nv_tegra_release``)."""
    return pathlib.Path(release_file).is_file()


def platform_kind(release_file: os.PathLike = TEGRA_RELEASE) -> str:
    return 'jetson' if is_jetson(release_file) else 'discrete'


def default_max_batch(release_file: os.PathLike = TEGRA_RELEASE) -> int:
    """Return the ``tensorrt.max_batch`` default: 1 on a Jetson, 4 elsewhere."""
    return DEFAULT_MAX_BATCH[platform_kind(release_file)]


def default_workspace_mb(release_file: os.PathLike = TEGRA_RELEASE) -> int:
    """Return the ``tensorrt.workspace_mb`` default: TensorRT's builder scratch limit."""
    return DEFAULT_WORKSPACE_MB[platform_kind(release_file)]
