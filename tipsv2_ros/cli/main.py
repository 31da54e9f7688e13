# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2``: download weights, run on images, run the node, the demo, export, benchmark.

Each subcommand lives in its own module with ``register(subparsers)``; heavy imports
(torch, rclpy) happen inside the commands, so ``tipsv2 --help`` stays instant.
"""
import argparse
import importlib
import os
import sys

from tipsv2_ros.cli import node as node_cli

SUBCOMMANDS = ('download', 'infer', 'demo', 'node', 'bag', 'export', 'bench')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='tipsv2',
        description='TIPSv2 depth, surface normals and open-vocabulary segmentation.')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name in SUBCOMMANDS:
        importlib.import_module(f'tipsv2_ros.cli.{name}').register(subparsers)
    return parser


def tune_allocator() -> None:
    """Let PyTorch back its large CPU tensors with transparent huge pages.

    A B/14 frame allocates dozens of 16-67 MB activations. glibc serves blocks that large
    with mmap and unmaps them on free, so every frame faults them in again, 4 KB at a time:
    ~70k page faults per frame in a main thread and ~130k in the node's inference thread,
    0.2-0.5 s of system time (measured with getrusage; see docs/benchmark.md, P3). With
    THP_MEM_ALLOC_ENABLE=1, PyTorch aligns allocations of 2 MB and more to huge pages and
    advises the kernel to use them (THP 'madvise' or 'always'): ~10x fewer faults.

    PyTorch reads the variable once, at its first allocation, so this must run before torch
    is imported; a value the user set wins.
    """
    if 'torch' not in sys.modules:
        os.environ.setdefault('THP_MEM_ALLOC_ENABLE', '1')


def perception_node() -> int:
    """Run the node as ``ros2 run tipsv2_ros perception_node`` does (allocator tuned first)."""
    tune_allocator()
    from tipsv2_ros.ros.node import main as node_main
    return node_main()


def main(argv=None) -> int:
    tune_allocator()
    parser = build_parser()
    # ROS arguments are rclpy's, not argparse's (which would take --ros-args for an option).
    argv, ros_args = node_cli.split_ros_args(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if ros_args:
        if args.command != 'node':
            parser.error('--ros-args belongs to `tipsv2 node`')
        args.ros_args = [*(args.ros_args or ()), *ros_args]
    if not getattr(args, 'func', None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
