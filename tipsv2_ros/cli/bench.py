# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2 bench``: where the time of a frame goes, and the ratio targets P0-P7.

Prints one table (markdown) with the machine at the top: p50/p90 of every stage of the
node's frame path, the node end to end over DDS, and ratios measured side by side in the
same run, each with its target and PASS/MISS. By default the model has the --variant's
shapes with random weights (written once to a cache folder); ``--weights downloaded`` or
explicit model files use real weights, like ``tipsv2 infer``. See docs/benchmark.md.
"""
import argparse
import os
import pathlib
import sys
import tempfile

from tipsv2_ros.cli.options import add_weight_options, explicit_files, runtime_config

# The row groups (bench/runner.py ROWS; listed here so that --help stays free of torch).
ROWS = ('stages', 'e2e', 'P0', 'P1', 'P2', 'P3', 'P6', 'P7', 'slide', 'tls', 'P4', 'P5',
        'fps')


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'bench', help='measure where the time goes (table with targets)', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weight_options(parser)
    parser.add_argument('--weights', choices=('random', 'downloaded'), default='random',
                        help='random weights of the --variant shapes (default), or the files '
                        'of `tipsv2 download`; explicit model files override both')
    parser.add_argument('--random-dir', metavar='DIR',
                        help='where the random weights are written once and reused '
                        '(default: $TMPDIR/tipsv2_bench_<variant>)')
    parser.add_argument('--iterations', type=int, default=10,
                        help='measured rounds per row (default 10)')
    parser.add_argument('--warmup', type=int, default=1, help='unmeasured rounds first')
    parser.add_argument('--only', default=','.join(ROWS),
                        help=f'comma-separated subset of: {",".join(ROWS)}')
    parser.add_argument('--threads', type=int,
                        help="torch intra-op threads, here and in the node (default: torch's)")
    parser.add_argument('--frame-size', default='640x480',
                        help='camera frames sent, WIDTHxHEIGHT (default 640x480)')
    parser.add_argument('--start-timeout', type=float, default=600.0,
                        help='seconds to wait for the node process to start')
    parser.add_argument('--out', metavar='FILE.md', help='also write the table to FILE.md')
    parser.set_defaults(func=run)


def random_weights(variant: str, directory=None) -> dict:
    """Random weights of ``variant`` by role, written once and then reused."""
    from tipsv2_ros.model import random_weights as writer
    folder = pathlib.Path(directory or os.path.join(tempfile.gettempdir(),
                                                    f'tipsv2_bench_{variant}'))
    marker = folder / 'complete'
    names = {'vision_weights': 'vision.npz', 'text_weights': 'text.npz',
             'tokenizer': 'tokenizer.model', 'depth_head': 'depth_dpt.zip',
             'normals_head': 'normals_dpt.zip'}
    if not marker.exists():
        print(f'[bench] writing random {variant} weights to {folder} (once)', flush=True)
        writer.write_random_checkpoint(folder, variant, seed=0)
        marker.write_text('written by tipsv2 bench\n')
    return {role: str(folder / name) for role, name in names.items()}


def _frame_size(text: str):
    width, height = (int(v) for v in text.lower().split('x'))
    return height, width


def run(args) -> int:
    from tipsv2_ros.bench import runner
    from tipsv2_ros.runtime import startup

    only = frozenset(name.strip() for name in args.only.split(',') if name.strip())
    if not only or not only <= set(runner.ROWS):
        print(f'tipsv2 bench: error: --only takes a subset of {",".join(ROWS)}',
              file=sys.stderr)
        return 2
    try:
        runtime = runtime_config(args)
        if explicit_files(args):
            weights = 'weights from the given files'
        elif args.weights == 'downloaded':
            weights = f'downloaded {args.variant} weights'
        else:
            runtime = runtime.replace(files=random_weights(args.variant, args.random_dir))
            weights = f'random {args.variant} weights'
        config = runner.BenchConfig(runtime, weights, args.iterations, args.warmup, only,
                                    args.threads, _frame_size(args.frame_size),
                                    args.start_timeout)
        table, _ = runner.run(config, log=lambda text: print(f'[bench] {text}', flush=True))
    except (startup.StartupError, ValueError, OSError) as error:
        print(f'tipsv2 bench: error: {error}', file=sys.stderr)
        return 1
    print(table)
    if args.out:
        pathlib.Path(args.out).write_text(table)
    return 0
