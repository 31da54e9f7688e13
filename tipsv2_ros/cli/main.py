# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2``: download weights, run on images, run the node, the demo, export, benchmark.

Each subcommand lives in its own module with ``register(subparsers)``; heavy imports
(torch, rclpy) happen inside the commands, so ``tipsv2 --help`` stays instant.
"""
import argparse
import importlib
import sys

SUBCOMMANDS = ('download', 'infer', 'demo', 'node', 'export', 'bench')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='tipsv2',
        description='TIPSv2 depth, surface normals and open-vocabulary segmentation.')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f'tipsv2_ros.cli.{name}')
        except ModuleNotFoundError as error:
            if error.name != f'tipsv2_ros.cli.{name}':
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, 'func', None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
