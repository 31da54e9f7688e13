# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Names of TensorRT engine and timing-cache files: what they only work with is in the name.

A serialized engine (and a timing cache) loads only on the TensorRT version and the GPU
model that built it, and only for batches up to its profile's maximum. All three are in the
file name, so one cache folder shared by several machines (an NFS home, a fleet image) or
used at two ``tensorrt.max_batch`` values keeps one file per combination instead of one file
each overwrites. What does not restrict where the file runs (the weights, the graph, the
precision level) is hashed into a short digest; the sidecar has the full key.
"""
import re
from typing import Mapping

from tipsv2_ros.runtime.export import cache

# Key fields hashed into the digest (the others are spelled out in the name).
_HASHED = ('part', 'checkpoint', 'config', 'outputs', 'precision', 'network', 'variant')


def gpu_identity(name: str, major: int, minor: int, multiprocessors: int) -> str:
    """'NVIDIA H200 (sm_90, 132 SMs)': the model and its size (Orin variants share sm_87)."""
    return f'{name} (sm_{major}{minor}, {multiprocessors} SMs)'


def slug(text: str) -> str:
    """Keep lower-case letters, digits, dots; the rest become single dashes."""
    return re.sub(r'-+', '-', re.sub(r'[^a-z0-9.]+', '-', text.lower())).strip('-')


def gpu_slug(gpu: str) -> str:
    """'NVIDIA H200 (sm_90, 132 SMs)' -> 'nvidia-h200-sm90-132sm'."""
    text = re.sub(r'sm_(\d+)', r'sm\1', gpu)
    text = re.sub(r'(\d+) SMs', r'\1sm', text)
    return slug(text)


def engine_name(key: Mapping) -> str:
    """Name an engine file after its key (``tensorrt_backend.engine_key``).

    Example: ``b14-448x448-encoder-fp16-trt10.13.3.9-nvidia-h200-sm90-132sm-b4-<hash>.engine``.
    """
    h, w = key['input_size']
    stable = {k: key[k] for k in _HASHED if k in key}
    return (f'{key["variant"]}-{h}x{w}-{key["part"]}-{key["precision"]}-'
            f'trt{slug(str(key["tensorrt"]))}-{gpu_slug(str(key["gpu"]))}-'
            f'b{int(key["max_batch"])}-{cache.digest(stable)}.engine')


def timing_cache_name(version: str, gpu: str) -> str:
    """Name the timing cache of one TensorRT version on one GPU model (shared by all parts)."""
    return f'timing-trt{slug(version)}-{gpu_slug(gpu)}.cache'
