# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The Python steps of tools/gpu_check.sh: versions, engines with parity gates, inspector.

Usage (after ``. scripts/env.sh``; tools/gpu_check.sh runs them in order):
    python tools/gpu_check.py versions --out DIR
    python tools/gpu_check.py engines --out DIR --variant b14 --size 448 --size 98x126

``engines`` writes random weights of ``--variant`` (once, under DIR), then per size builds the
TensorRT engines through the backend (export, build, parity gate against PyTorch fp32,
fallback), and writes the accepted precision, the gate's figures, the build log and the
engine inspector's layer precisions and fused-attention layers (``engines-HxW.json``). On
a machine without CUDA or TensorRT (``--cpu``) it runs what the CPU can: the ONNX export and
its onnxruntime parity gate, and the mixed-precision graphs TensorRT would be given, and
says which steps it could not run. Each step's status goes to ``steps.jsonl``.
"""
import argparse
import importlib.util
import json
import pathlib
import platform
import shutil
import subprocess
import sys
import time
import traceback


def _record(out: pathlib.Path, step: str, status: str, detail: str = '', **extra) -> None:
    """Append a step's status (ok, failed, skipped) to steps.jsonl and print it."""
    line = {'step': step, 'status': status, 'detail': detail, **extra}
    with open(out / 'steps.jsonl', 'a') as f:
        f.write(json.dumps(line) + '\n')
    print(f'[gpu_check] {step}: {status}{" - " + detail if detail else ""}', flush=True)


def _version(module: str) -> str:
    if importlib.util.find_spec(module) is None:
        return 'not installed'
    try:
        return str(getattr(__import__(module), '__version__', 'installed'))
    except Exception as error:  # a broken install (missing CUDA libraries) says so
        return f'import failed: {type(error).__name__}: {error}'


def versions(out: pathlib.Path) -> dict:
    """Return (and write to versions.json) the GPU, driver, CUDA and library versions."""
    import torch
    found = {'python': platform.python_version(), 'machine': platform.machine(),
             'torch': torch.__version__, 'torch_cuda': torch.version.cuda or 'none (CPU build)',
             'cuda_available': torch.cuda.is_available(), 'tensorrt': _version('tensorrt'),
             'onnxruntime': _version('onnxruntime'), 'onnx': _version('onnx')}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        found.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                     compute_capability=f'{props.major}.{props.minor}',
                     multiprocessors=props.multi_processor_count)
    if shutil.which('nvidia-smi'):
        query = subprocess.run(['nvidia-smi', '--query-gpu=name,driver_version',
                                '--format=csv,noheader'], capture_output=True, text=True)
        found['nvidia_smi'] = query.stdout.strip() or query.stderr.strip()
    else:
        found['nvidia_smi'] = 'not found (no NVIDIA driver)'
    if importlib.util.find_spec('onnxruntime') is not None:
        try:
            import onnxruntime
            found['onnxruntime_providers'] = onnxruntime.get_available_providers()
        except Exception as error:
            found['onnxruntime_providers'] = f'import failed: {error}'
    (out / 'versions.json').write_text(json.dumps(found, indent=1) + '\n')
    for key, value in found.items():
        print(f'  {key:22} {value}')
    return found


def _random_model(out: pathlib.Path, variant: str, device):
    from tipsv2_ros.model import random_weights
    from tipsv2_ros.model.tips import TipsV2
    folder = out / f'weights-{variant}'
    marker = folder / 'complete'
    if not marker.exists():
        random_weights.write_random_checkpoint(folder, variant, seed=0)
        marker.write_text('written by tools/gpu_check.py\n')
    paths = random_weights.CheckpointPaths(
        vision=folder / 'vision.npz', text=folder / 'text.npz',
        tokenizer=folder / 'tokenizer.model', depth_head=folder / 'depth_dpt.zip',
        normals_head=folder / 'normals_dpt.zip',
        segmentation_head=folder / 'segmentation_dpt.zip')
    model = TipsV2.from_files(paths.vision, paths.text, paths.tokenizer,
                              depth_head=paths.depth_head, normals_head=paths.normals_head)
    roles = {'vision': 'vision_weights', 'text': 'text_weights'}
    files = {roles.get(k, k): str(v) for k, v in paths._asdict().items()}
    return model.to(device).eval(), files


def _engines_gpu(out, model, files, size, cache, log) -> dict:
    from tipsv2_ros.model import TASKS
    from tipsv2_ros.runtime import backends
    from tipsv2_ros.runtime.backends.tensorrt import inspection as tensorrt_inspect
    start = time.perf_counter()
    from tipsv2_ros.runtime.config import RuntimeConfig
    backend = backends.create('tensorrt', model, size, TASKS, model.device, 'fp16', cache,
                              log, RuntimeConfig(tasks=TASKS, files=files))
    result = {'precision': backend.precision, 'tensorrt': backend.version,
              'seconds': round(time.perf_counter() - start, 1),
              'parity': backend.report.describe(), 'passed': backend.report.passed(),
              'files': {n: str(p) for n, p in backend.files.items()}, 'inspector': {}}
    for name, path in backend.files.items():
        layers = tensorrt_inspect.engine_layers(path.read_bytes())
        (out / f'layers-{path.stem}.json').write_text(json.dumps(layers, indent=1))
        result['inspector'][name] = tensorrt_inspect.summarise(layers)
    backend.close()
    return result


def _engines_cpu(out, model, files, size, cache, log) -> dict:
    """Run what the CPU can of the engine step: export, ORT parity, mixed-precision graphs."""
    import onnx
    from tipsv2_ros.model import TASKS
    from tipsv2_ros.runtime import backends, export
    from tipsv2_ros.runtime.export import precision as onnx_precision
    start = time.perf_counter()
    parts = export.export_parts(model, TASKS, size, backends.checkpoint_ids(TASKS, files),
                                cache, log)
    result = {'seconds': 0.0, 'onnx': {}, 'mixed': {}}
    for name, part in parts.items():
        result['onnx'][name] = {'file': str(part.path),
                                'max_relative_error': part.record['max_relative_error']}
        graph = onnx.load(str(part.path), load_external_data=False).graph
        for level in onnx_precision.PRECISIONS:
            kinds = onnx_precision.compute_types(onnx.load(str(part.path)), level)
            sums = onnx_precision.expectations(graph)
            result['mixed'][f'{name} {level}'] = {
                'fp32_nodes': sum(k == 'fp32' for k in kinds.values()),
                'fp16_nodes': sum(k == 'reduced' for k in kinds.values()),
                'expectations_fp32': all(kinds[n] == 'fp32' for n in sums),
                'expectations': len(sums)}
    result['seconds'] = round(time.perf_counter() - start, 1)
    return result


def engines(out: pathlib.Path, variant: str, sizes, cpu: bool) -> int:
    import torch
    from tipsv2_ros.runtime.config import parse_input_size
    cuda = torch.cuda.is_available() and not cpu
    has_trt = importlib.util.find_spec('tensorrt') is not None
    device = torch.device('cuda' if cuda else 'cpu')
    from tipsv2_ros.runtime.export import cache as artefacts
    cache = artefacts.default_dir()  # $TIPSV2_CACHE/engines: the bench finds the engines
    failures = 0
    try:
        model, files = _random_model(out, variant, device)
    except Exception as error:
        _record(out, f'weights {variant}', 'failed', f'{type(error).__name__}: {error}')
        return 1
    for text in sizes:
        size = parse_input_size(text)
        step = f'engines {variant} {size[0]}x{size[1]}'
        log_file = out / f'build-{size[0]}x{size[1]}.log'
        with open(log_file, 'a') as handle:
            def log(line, handle=handle):
                handle.write(line + '\n')
                handle.flush()
                print(f'  {line}', flush=True)
            try:
                if cuda and has_trt:
                    result = _engines_gpu(out, model, files, size, cache, log)
                    status = 'ok' if result['passed'] else 'failed'
                    detail = (f'{result["precision"]} accepted in {result["seconds"]} s: '
                              f'{result["parity"]}; fused attention layers: '
                              f'{len(result["inspector"]["encoder"]["fused_attention"])}')
                else:
                    why = 'no CUDA device' if not cuda else 'TensorRT is not installed'
                    result = _engines_cpu(out, model, files, size, cache, log)
                    status = 'skipped'
                    detail = (f'TensorRT build and gate not run ({why}); ran the ONNX export '
                              f'with its onnxruntime gate and the mixed-precision graphs')
            except Exception as error:
                traceback.print_exc(file=handle)
                result, status = {}, 'failed'
                detail = f'{type(error).__name__}: {str(error).splitlines()[0][:300]}'
        (out / f'engines-{size[0]}x{size[1]}.json').write_text(
            json.dumps(result, indent=1, default=str) + '\n')
        _record(out, step, status, detail, log=str(log_file))
        failures += status == 'failed'
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('command', choices=('versions', 'engines'))
    parser.add_argument('--out', required=True, type=pathlib.Path)
    parser.add_argument('--variant', default='b14')
    parser.add_argument('--size', action='append', default=None,
                        help='input size N or HxW (repeat; default 448 and 98x126)')
    parser.add_argument('--cpu', action='store_true', help='no GPU steps even if CUDA exists')
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == 'versions':
        versions(args.out)
        return 0
    return engines(args.out, args.variant, args.size or ['448', '98x126'], args.cpu)


if __name__ == '__main__':
    sys.exit(main())
