# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2 bag INPUT OUTPUT``: run the perception on a recorded ROS 2 bag, into a new bag.

INPUT is a bag folder (sqlite3 or mcap), a .mcap or a .db3 file. OUTPUT is a new bag folder
(mcap; --storage sqlite3), or one .mcap file when it ends in .mcap. Every frame of the image
topics (--image, default: every sensor_msgs/Image topic, and CompressedImage ones without a
raw twin) goes through the node's own frame path with the node's parameters, and every
output the node publishes is written next to its camera (/front/image_raw ->
/front/depth/image, /front/segmentation/labels...), with the frame's header, at the frame's
receive time. Ctrl-C stops after the frames in flight and leaves a valid, readable bag.
"""
import argparse
import signal
import sys

from tipsv2_ros.cli.options import FILE_FLAGS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'bag', help='run on a recorded bag and write the outputs to a new bag',
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('input', metavar='INPUT', help='bag folder, .mcap or .db3 file')
    parser.add_argument('output', metavar='OUTPUT', help='new bag folder, or FILE.mcap')
    parser.add_argument('--image', action='append', metavar='TOPIC',
                        help='image topic to process (repeatable; default: every image topic)')
    parser.add_argument('--params-file', help="parameter YAML, as the node's (default: the "
                        'package\'s config/perception.yaml; "" for none)')
    parser.add_argument('-p', '--param', action='append', metavar='NAME:=VALUE',
                        help='set a node parameter, e.g. -p model.input_size:=336x448')
    parser.add_argument('--labels', help='comma-separated open-vocabulary labels')
    parser.add_argument('--tasks', help='comma-separated subset of depth,normals,segmentation')
    parser.add_argument('--backend', help='auto, torch, onnxruntime, tensorrt or triton')
    parser.add_argument('--precision', help='auto, fp32, fp16 or bf16')
    parser.add_argument('--device', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--input-size', help='model input: N or HxW, multiples of 14')
    group = parser.add_argument_group('model files (default: the parameters)')
    for name, text in FILE_FLAGS.items():
        group.add_argument('--' + name.replace('_', '-'), metavar='FILE', help=text)
    parser.add_argument('--colored', action='store_true',
                        help='also write the colour views (depth/colored, normals/colored, '
                             'segmentation/colored)')
    parser.add_argument('--points', action='store_true',
                        help='also write depth/points (needs camera_info)')
    parser.add_argument('--copy-input', action='store_true',
                        help='also copy the image and camera_info topics into OUTPUT')
    parser.add_argument('--copy-all', action='store_true',
                        help='also copy every other topic of INPUT into OUTPUT')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                        help='storage of OUTPUT (default: mcap)')
    parser.add_argument('--batch', type=int, default=0,
                        help="frames per inference (default: the backend's largest, else 4)")
    parser.add_argument('--overwrite', action='store_true', help='replace an existing OUTPUT')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.set_defaults(func=run)


def overrides(args) -> dict:
    """Return the parameter values the flags set (the flags win over -p and the file)."""
    values = {}
    if args.labels is not None:
        values['labels'] = [x.strip() for x in args.labels.split(',') if x.strip()]
    if args.tasks is not None:
        values['tasks'] = [x.strip() for x in args.tasks.split(',') if x.strip()]
    for flag, name in (('backend', 'backend'), ('precision', 'precision'),
                       ('device', 'device'), ('input_size', 'model.input_size')):
        if getattr(args, flag) is not None:
            values[name] = getattr(args, flag)
    for name in FILE_FLAGS:
        if getattr(args, name) is not None:
            values[f'model.{name}'] = getattr(args, name)
    return values


class _Stop:
    """SIGINT/SIGTERM: the first finishes the frames in flight, a second stops at once."""

    def __init__(self, log):
        self.requested, self._log = False, log

    def __call__(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._log('stopping after the frames in flight; the output bag will be closed '
                  '(Ctrl-C again to stop at once)')

    def install(self) -> dict:
        """Handle SIGINT and SIGTERM; return the previous handlers."""
        return {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}


_BAR = []  # the progress bar while one is shown: log lines go above it


def _progress_factory(enabled: bool):
    def make(total):
        if not enabled:
            return lambda n: None
        from tqdm import tqdm
        bar = tqdm(total=total, unit='frame', desc='tipsv2 bag', dynamic_ncols=True,
                   file=sys.stderr)
        _BAR.append(bar)
        return lambda n: bar.update(n) if n else None
    return make


def _log(text: str) -> None:
    if _BAR:
        _BAR[-1].write(f'[bag] {text}', file=sys.stderr)
    else:
        print(f'[bag] {text}', file=sys.stderr, flush=True)


def _report(summary, output) -> int:
    rate = summary.processed / summary.seconds if summary.seconds > 0 else 0.0
    _log(f'{summary.processed} of {summary.frames} frames processed in '
         f'{summary.seconds:.1f} s ({rate:.2f} frames/s); wrote {output}')
    for topic, count in sorted(summary.outputs.items()):
        _log(f'  {topic}: {count}')
    for kind, count in sorted(summary.skipped.items()):
        _log(f'skipped {count} frame(s): {kind}')
    if summary.stopped:
        _log(f'warning: the input is damaged; {summary.stopped}. Every frame before that '
             'point was processed.')
    if summary.interrupted:
        _log(f'interrupted: {output} holds the outputs of the first {summary.processed} '
             'frames')
        return 130
    if summary.frames and not summary.processed:
        _log('error: no frame could be processed (see the skipped frames above)')
        return 1
    if not summary.frames:
        _log('error: no frame was read from the image topics')
        return 1
    return 0


def run(args) -> int:
    from tipsv2_ros.cli.node import default_params_file
    from tipsv2_ros.ros.bag_input import BagError
    from tipsv2_ros.ros.bag_perception import Options, run_bag

    stop = _Stop(_log)
    options = Options(
        images=args.image or (),
        params_file=args.params_file if args.params_file is not None else default_params_file(),
        assignments=args.param or (), overrides=overrides(args), colored=args.colored,
        points=args.points, copy_input=args.copy_input or args.copy_all,
        copy_all=args.copy_all, storage=args.storage, overwrite=args.overwrite,
        batch=max(0, args.batch))
    previous = stop.install()
    try:
        summary = run_bag(args.input, args.output, options, _log,
                          _progress_factory(not args.no_progress), lambda: stop.requested)
    except BagError as error:
        print(f'tipsv2 bag: error: {error}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('tipsv2 bag: interrupted', file=sys.stderr)
        return 130
    except Exception as error:  # never a traceback for the user; the message says what
        print(f'tipsv2 bag: error: unexpected {type(error).__name__}: {error}',
              file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    while _BAR:
        _BAR.pop().close()
    return _report(summary, args.output)
