# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2 demo``: the perception node on the bundled sample frames, over real DDS.

Starts the node as its own process (as ``ros2 run`` would), plays the sample frames to it
from a player node, and writes depth, normals and segmentation views plus a summary.
By default it uses the official TIPSv2 B/14 weights (downloaded on first use); with
``--offline``, or when they cannot be fetched, it runs on small random weights and says so
at the start, at the end and on every image.
"""
import json
import pathlib
import tempfile
import textwrap

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / 'samples'
DEMO_LABELS = ['floor', 'wall', 'ceiling', 'door', 'picture', 'box', 'ball']


def register(subparsers) -> None:
    parser = subparsers.add_parser('demo', help='run the node on the bundled sample frames',
                                   description=__doc__)
    parser.add_argument('--out', default='tipsv2_demo', help='output folder (default: '
                        './tipsv2_demo)')
    parser.add_argument('--offline', action='store_true',
                        help='use small random weights (meaningless output; no download)')
    parser.add_argument('--variant', default='b14', help='official variant (default: b14)')
    parser.add_argument('--cache-dir', help='weights cache (default: ~/.cache/tipsv2_ros)')
    parser.add_argument('--backend', default='auto', help='inference backend (default: auto)')
    parser.add_argument('--input-size', default='336x448',
                        help="model input HxW (default 336x448: the frames' 4:3 aspect)")
    parser.add_argument('--labels', default=','.join(DEMO_LABELS),
                        help='comma-separated labels')
    parser.add_argument('--timeout', type=float, default=600.0,
                        help='seconds to wait for the node to start')
    parser.set_defaults(func=run)


def _banner(lines) -> None:
    lines = [part for line in lines for part in textwrap.wrap(line, 92)]
    width = max(len(line) for line in lines) + 4
    print('!' * width, *(f'! {line}' for line in lines), '!' * width, sep='\n', flush=True)


def _weights(args, scratch: pathlib.Path):
    """Return (parameter overrides for the model files, fallback notice or None)."""
    from tipsv2_ros import fetch, weights
    if not args.offline:
        try:
            return _file_params(weights.resolve_weights(args.variant, args.cache_dir)), None
        except FileNotFoundError:
            pass
        print(f'[demo] fetching the official TIPSv2 {args.variant} weights (first run only)')
        try:
            files = weights.official_files(args.variant)
            if not fetch.can_reach(files[0].url, timeout=5.0):
                raise weights.WeightsError(f'cannot reach {files[0].url} (no internet?)')
            fetch.download(files, weights.variant_dir(args.variant, args.cache_dir))
            return _file_params(weights.resolve_weights(args.variant, args.cache_dir)), None
        except Exception as error:  # no internet, server error, disk full...
            notice = [f'Could not get the TIPSv2 {args.variant} weights: {error}',
                      f'To get them: run `tipsv2 download {args.variant}` where the internet '
                      'is reachable, or copy the files into '
                      f'{weights.variant_dir(args.variant, args.cache_dir)} (see README).',
                      'This run uses SMALL RANDOM WEIGHTS: every output is MEANINGLESS.']
    else:
        notice = ['--offline: running on SMALL RANDOM WEIGHTS; the outputs are MEANINGLESS.']
    from tipsv2_ros.model import random_weights
    paths = random_weights.write_random_checkpoint(scratch, random_weights.SMALL, seed=0)
    return _file_params(paths), notice


def _file_params(paths) -> dict:
    """Node parameters naming the files of a weights.WeightPaths."""
    names = {'vision_weights': paths.vision, 'text_weights': paths.text,
             'tokenizer': paths.tokenizer, 'depth_head': paths.depth_head,
             'normals_head': paths.normals_head}
    return {f'model.{name}': str(path) for name, path in names.items() if path}


def run(args) -> int:
    import numpy as np
    from PIL import Image

    out = pathlib.Path(args.out)
    labels = [label.strip() for label in args.labels.split(',') if label.strip()]
    with tempfile.TemporaryDirectory(prefix='tipsv2_demo_') as scratch:
        params, notice = _weights(args, pathlib.Path(scratch))
        if notice:
            _banner(notice)
        params.update({'backend': args.backend, 'model.input_size': args.input_size,
                       'labels': labels, 'cameras': [''], 'publish_points': False})
        frames = [np.asarray(Image.open(p).convert('RGB'))
                  for p in sorted(SAMPLES.glob('room_*.png'))]
        intrinsics = json.loads((SAMPLES / 'camera.json').read_text())
        summary = _run_node_and_player(params, frames, intrinsics, out, bool(notice), args)
    print(summary)
    if notice:
        _banner(notice)
    return 0 if summary.startswith('[demo] ok') else 1


def _run_node_and_player(params, frames, intrinsics, out, meaningless, args) -> str:
    import numpy as np

    from tipsv2_ros.cli import views
    from tipsv2_ros.ros.player import play_to_node

    try:
        session = play_to_node(params, '/tipsv2_demo', frames, intrinsics, args.timeout)
    except RuntimeError as error:
        return f'[demo] FAILED: {error}'
    received = session.received
    if not received:
        return '[demo] FAILED: no outputs arrived from the node'
    for item in received:
        rendered = views.render(frames[item.index], item.arrays.get('depth'),
                                item.arrays.get('normals'), item.arrays.get('labels'),
                                session.labels, meaningless)
        views.save(out, f'frame_{item.index:02d}', rendered)
    latencies = sorted(1000 * (r.done - r.sent) for r in received)
    line = (f'[demo] ok: {len(received)}/{len(frames)} frames, '
            f'{len(received) / session.seconds:.2f} fps, latency p50 '
            f'{np.median(latencies):.0f} ms (max {latencies[-1]:.0f} ms), '
            f'{"RANDOM weights (meaningless)" if meaningless else "official weights"}; '
            f'views in {out}/')
    (out / 'summary.txt').write_text(line + '\n')
    return line
