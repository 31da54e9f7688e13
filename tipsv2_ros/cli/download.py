# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2 download``: fetch the official TIPSv2 weights into the local cache.

Stdlib, tqdm and `tipsv2_ros.weights`/`fetch` only: no torch, so it works on a fresh machine.
"""
import argparse
import sys

from tipsv2_ros import fetch, weights


def _tasks(text: str) -> tuple[str, ...]:
    tasks = tuple(t.strip() for t in text.split(',') if t.strip())
    unknown = sorted(set(tasks) - set(weights.TASKS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f'unknown task(s) {", ".join(unknown)}; choose from {",".join(weights.TASKS)}')
    return tasks


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``download`` subcommand to the ``tipsv2`` parser."""
    parser = subparsers.add_parser(
        'download', help='fetch the official TIPSv2 weights (resumable, hash-checked)',
        description='Download the official TIPSv2 weights of one variant: image and text '
                    'encoders, tokenizer and the DPT heads of --tasks. Interrupted downloads '
                    'resume; every file is checked against the hash its server publishes.')
    parser.add_argument('variant', nargs='?', default='b14', choices=weights.VARIANTS,
                        help='model size (default: %(default)s)')
    parser.add_argument('--source', choices=weights.SOURCES, default='gcs',
                        help='gcs: the official bucket (CC-BY-4.0); hf: the Hugging Face '
                             'copies (Apache-2.0) (default: %(default)s)')
    parser.add_argument('--revision', default='main',
                        help='with --source hf: the branch or commit to fetch; pin a commit '
                             'for reproducible deployments (the commit actually served is '
                             'recorded next to each file) (default: %(default)s)')
    parser.add_argument('--cache-dir', default=None,
                        help='cache root (default: $TIPSV2_CACHE, else '
                             '$XDG_CACHE_HOME/tipsv2_ros, else ~/.cache/tipsv2_ros)')
    parser.add_argument('--tasks', type=_tasks, default=weights.TASKS,
                        help='comma-separated DPT heads to fetch (default: '
                             f'{",".join(weights.TASKS)}; empty: encoders only)')
    parser.add_argument('--quiet', '-q', action='store_true',
                        help='no progress bars; print nothing on success')
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Download the files; return 0, or 1 after a one-line error on stderr."""
    folder = weights.variant_dir(args.variant, args.cache_dir)
    try:
        if args.source != 'hf' and args.revision != 'main':
            raise ValueError('--revision applies to --source hf only (the bucket has no '
                             'revisions)')
        files = weights.official_files(args.variant, args.source, args.tasks,
                                       revision=args.revision)
        paths = fetch.download(files, folder, progress=not args.quiet)
    except (weights.WeightsError, ValueError, OSError) as error:
        print(f'tipsv2 download: error: {error}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('tipsv2 download: interrupted; run it again to resume', file=sys.stderr)
        return 130
    if not args.quiet:
        print(*paths, sep='\n')
        print(f'TIPSv2 {args.variant} weights ready in {folder} (licence: {files[0].licence})')
    return 0
