# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Which Triton container serves a repository of TensorRT plans.

A plan deserializes only in the TensorRT version that built it (all four numbers) on the
same GPU model. ``tipsv2 export --triton-repo --engine`` builds plans with the local
TensorRT, so the repository says which ``nvcr.io/nvidia/tritonserver`` release ships that
TensorRT (``SERVE_WITH.txt``), instead of leaving ``<yy.mm>`` to guesswork. The table lists
the first release of each TensorRT 10 minor version as given in the "Container Versions"
table of NVIDIA's Triton release notes when this was written; a version not in it gets the
rule and where to look.
"""
import pathlib
from typing import Optional

from tipsv2_ros.runtime.backends.tensorrt import files as engine_files

# TensorRT major.minor -> the Triton container release (yy.mm) that ships it.
TRITON_RELEASES = {
    (10, 0): '24.05', (10, 1): '24.06', (10, 2): '24.07', (10, 3): '24.08',
    (10, 4): '24.09', (10, 5): '24.10', (10, 6): '24.11', (10, 7): '24.12',
    (10, 8): '25.01', (10, 9): '25.03', (10, 10): '25.05', (10, 11): '25.06',
}
NOTES = 'https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/'
FILE_NAME = 'SERVE_WITH.txt'


def container_for(tensorrt_version: str) -> Optional[str]:
    """Return the container image for plans of ``tensorrt_version``, or None if unknown."""
    from tipsv2_ros.runtime.backends.tensorrt.build import version_tuple
    release = TRITON_RELEASES.get(version_tuple(tensorrt_version))
    return f'nvcr.io/nvidia/tritonserver:{release}-py3' if release else None


def serving_note(tensorrt_version: str, gpu: str) -> str:
    """Return what ``SERVE_WITH.txt`` says: the container, the TensorRT and the GPU."""
    image = container_for(tensorrt_version)
    lines = [f'These TensorRT plans were built with TensorRT {tensorrt_version} on {gpu}.',
             'They load only in exactly that TensorRT version, on that GPU model.']
    if image:
        lines += [f'Serve them with {image}',
                  f'(check that its release notes list TensorRT {tensorrt_version}: {NOTES}).']
    else:
        lines += [f'Serve them with the nvcr.io/nvidia/tritonserver:<yy.mm>-py3 release whose '
                  f'release notes list TensorRT {tensorrt_version} ({NOTES}),',
                  'or rebuild the plans inside that container with its TensorRT.']
    return '\n'.join(lines) + '\n'


def write_note(out_dir: pathlib.Path, engine_file: pathlib.Path) -> str:
    """Write ``SERVE_WITH.txt`` from an engine's sidecar; return the container line."""
    import json
    from tipsv2_ros.runtime.export import cache
    key = json.loads(cache.sidecar(engine_file).read_text())['key']
    text = serving_note(str(key['tensorrt']), str(key['gpu']))
    (pathlib.Path(out_dir) / FILE_NAME).write_text(text)
    return container_for(str(key['tensorrt'])) or (
        f'the tritonserver release with TensorRT {key["tensorrt"]} '
        f'(GPU {engine_files.gpu_slug(str(key["gpu"]))})')
