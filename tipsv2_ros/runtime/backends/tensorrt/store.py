# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Engines in the cache: their key, loading a valid one, building and storing a new one.

An engine whose file is missing, stale or corrupt, or that TensorRT cannot deserialize, is
rebuilt (the log says why). An engine that deserializes but whose execution context does
not fit in GPU memory is not: a rebuild would produce the same engine (the error says what
to lower instead).
"""
import pathlib
import shutil
import tempfile
import time
from typing import Callable, Tuple

from tipsv2_ros.runtime import export
from tipsv2_ros.runtime.backends.tensorrt import files as engine_files
from tipsv2_ros.runtime.export import cache


def engine_key(part: export.ExportedPart, level: str, toolchain, max_batch: int) -> dict:
    """Return what an engine depends on; a mismatch means a rebuild (logged)."""
    key = part.record['key']
    onnx_file = part.record['files'][part.path.name]['sha256']
    return {'format': 2, 'kind': 'tensorrt', 'part': key['part'], 'variant': key['variant'],
            'checkpoint': key['checkpoint'], 'config': key['config'],
            'input_size': key['input_size'], 'outputs': key['outputs'], 'precision': level,
            'network': 'strongly typed' if toolchain.strongly_typed else 'weakly typed',
            'tensorrt': toolchain.version, 'gpu': toolchain.gpu, 'max_batch': max_batch,
            'onnx': onnx_file}


def load_or_build(part: export.ExportedPart, level: str, toolchain, folder: pathlib.Path,
                  max_batch: int, device, log: Callable[[str], None]
                  ) -> Tuple[Callable, pathlib.Path]:
    """Return (runner, engine file) of ``part`` at ``level``: from the cache, or built."""
    from tipsv2_ros.runtime.backends.tensorrt.engine import EngineLoadError
    key = engine_key(part, level, toolchain, max_batch)
    target = folder / engine_files.engine_name(key)
    with cache.locked(target):
        if cache.load(target, key, log, f'TensorRT {part.spec.name}') is not None:
            try:
                return toolchain.load(target.read_bytes(), device), target
            except EngineLoadError as error:
                log(f'TensorRT {part.spec.name}: {target.name} does not load ({error}); '
                    'rebuilding')
        build(part, level, toolchain, folder, target, key, max_batch, log)
        return toolchain.load(target.read_bytes(), device), target


def build(part, level, toolchain, folder, target, key, max_batch, log) -> None:
    """Build ``part`` at ``level`` into ``target`` (sidecar last, so a crash leaves no engine)."""
    from tipsv2_ros.runtime.export import precision as onnx_precision
    from tipsv2_ros.runtime.backends.tensorrt.build import BuildSettings
    h, w = key['input_size']
    log(f'building the TensorRT {level} engine of the {part.spec.name} ({key["variant"]}, '
        f'{h}x{w}, TensorRT {toolchain.version}, {key["network"]}, {toolchain.gpu}); this '
        'takes a few minutes (longer on a Jetson) and is cached ...')
    start = time.perf_counter()
    timing = folder / engine_files.timing_cache_name(toolchain.version, toolchain.gpu)
    settings = (toolchain.settings or BuildSettings())._replace(timing_cache=str(timing))
    scratch = pathlib.Path(tempfile.mkdtemp(prefix='.engine-', dir=target.parent))
    try:
        source, pinned = part.path, ()
        if level != 'fp32' and toolchain.strongly_typed:
            source = scratch / f'{part.spec.name}-{level}.onnx'
            onnx_precision.write_mixed(part.path, level, source)
        elif level != 'fp32':
            pinned = onnx_precision.fp32_nodes_of(part.path, level)
        blob = toolchain.build(source, level, pinned, max_batch, log,
                               toolchain.strongly_typed, settings)
        built = scratch / target.name
        built.write_bytes(blob)
        seconds = time.perf_counter() - start
        cache.store(target, {target.name: built}, key, {'build_seconds': round(seconds, 1)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f'built the {part.spec.name} engine in {seconds:.0f} s ({len(blob) / 1e6:.0f} MB); '
        f'cached as {target}')
