# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2 export``: the image path to ONNX (and, with --engine, TensorRT), parity-checked.

Writes one ONNX file per part (encoder, and the depth/normals heads of --tasks) at a fixed
input size, each accepted only if onnxruntime reproduces PyTorch within 1e-3 relative. With
--engine it also builds the TensorRT engines and runs the parity gate on the sample frames,
falling back from fp16 to safer precisions when the gate fails. Files go into the cache the
node reads (or --out), with a JSON sidecar each; cached files that still match are reused.
With --triton-repo DIR it writes a Triton Inference Server model repository of the parts
(ONNX, or TensorRT plans with --engine) for `backend: triton`.
"""
import argparse
import sys

from tipsv2_ros.cli.options import add_model_options, file_flags, runtime_config
from tipsv2_ros.tasks import REGISTRY


def _tasks(text: str) -> tuple:
    tasks = tuple(t.strip() for t in text.split(',') if t.strip())
    known = REGISTRY.exported()
    unknown = sorted(set(tasks) - set(known))
    if unknown or not tasks:
        raise argparse.ArgumentTypeError(f'tasks {text!r}: choose from {",".join(known)}')
    return tasks


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand to the ``tipsv2`` parser."""
    parser = subparsers.add_parser(
        'export', help='export the image path to ONNX (and TensorRT with --engine)',
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_argument_group('model files (default: the downloaded --variant)')
    image_path_files = {role for spec in REGISTRY if spec.exported for role in spec.files}
    for name, text in file_flags().items():
        if name in image_path_files | {'vision_weights'}:  # the ADE20K head is not exported
            group.add_argument('--' + name.replace('_', '-'), metavar='FILE', help=text)
    add_model_options(group)
    parser.add_argument('--input-size', default='448', help='N or HxW, multiples of 14 '
                        '(default: %(default)s)')
    parser.add_argument('--tasks', type=_tasks, default=None,
                        help='comma-separated tasks (default: all the given files allow)')
    parser.add_argument('--out', help='output folder (default: the cache the node reads, '
                        '$TIPSV2_CACHE/engines or ~/.cache/tipsv2_ros/engines)')
    parser.add_argument('--engine', action='store_true',
                        help='also build the TensorRT engines (needs a CUDA GPU and TensorRT)')
    parser.add_argument('--precision', default='auto', choices=('auto', 'fp16', 'fp32'),
                        help='engine precision; auto = fp16 with parity-gated fallback')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--max-batch', type=int, default=4,
                        help='largest batch of the engines (default: %(default)s, as the node)')
    parser.add_argument('--triton-repo', metavar='DIR',
                        help='also write a Triton model repository into DIR')
    parser.add_argument('--triton-instances', type=int, default=1,
                        help='model instances per part in the repository (default: 1)')
    parser.set_defaults(func=run, backend='torch', segmentation_head=None)
    return parser


def run(args: argparse.Namespace) -> int:
    """Export (and build); print what was written and the parity figures; return 0 or 1."""
    from tipsv2_ros.runtime import backends, export
    from tipsv2_ros.runtime import startup
    from tipsv2_ros.runtime.backends.base import BackendError
    from tipsv2_ros.runtime.export import cache

    def say(text: str) -> None:
        print(f'[export] {text}', flush=True)

    try:
        config = runtime_config(args)
        config = config.replace(tasks=tuple(args.tasks or config.tasks))
        input_size, tasks = config.input_size, config.tasks
        device = startup.resolve_device(args.device)
        files = startup.model_files(config)
        model = startup.load_model(files, tasks, startup.model_variant(config), device)
        checkpoints = backends.checkpoint_ids(tasks, files)
        out = args.out or cache.default_dir()
        say(f'{model.describe()}, tasks {",".join(tasks)}, {input_size[0]}x{input_size[1]}, '
            f'into {out}')
        opset = export.OPSET
        if not args.engine:  # the files backend onnxruntime on this device will look for
            from tipsv2_ros.runtime.backends.onnx_backend import export_opset
            opset = export_opset(device)
        parts = export.export_parts(model, tasks, input_size, checkpoints, out, say, opset)
        for name, part in parts.items():
            worst = max(part.record['max_relative_error'].values())
            size = sum(f['size'] for f in part.record['files'].values())
            print(f'{part.path}  ({size / 1e6:.1f} MB; {name}: onnxruntime vs PyTorch max '
                  f'relative error {worst:.1e})')
        if args.engine:
            if device.type != 'cuda':
                raise BackendError(f'--engine needs a CUDA device (device is {device})')
            from tipsv2_ros.runtime.backends.tensorrt.backend import TensorRTBackend
            precision = backends.resolve_precision(args.precision, 'tensorrt', device)
            with TensorRTBackend.build(model, input_size, tasks, device, precision, out,
                                       checkpoints, say, args.max_batch) as backend:
                for path in backend.files.values():
                    print(f'{path}  ({path.stat().st_size / 1e6:.1f} MB)')
                print(f'TensorRT {backend.precision} engines accepted: '
                      f'{backend.report.describe()}')
        if args.triton_repo:
            from tipsv2_ros.runtime.serving import repository as triton_repo
            repo = triton_repo.write_repository(
                model, args.triton_repo, input_size, tasks,
                engine='tensorrt' if args.engine else 'onnx', max_batch=args.max_batch,
                instances=args.triton_instances,
                precision=backends.resolve_precision(args.precision, 'tensorrt', device),
                checkpoints=checkpoints, cache_dir=out, log=say)
            print(f'{repo.path}  (Triton repository: {", ".join(repo.models)})')
            from tipsv2_ros.runtime.backends.triton.tls import serve_hint
            print(serve_hint(repo.path))
    except (ValueError, OSError, BackendError, startup.StartupError) as error:
        print(f'tipsv2 export: error: {error}', file=sys.stderr)
        return 1
    return 0
