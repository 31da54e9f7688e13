# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2 node``: start the perception node where no ``ros2`` command exists.

Same node as ``ros2 run tipsv2_ros perception_node``; the options below are shortcuts for
the usual ``--ros-args`` (which may also follow, e.g. ``--ros-args -p labels:="[a, b]"``).
"""
import argparse
import os


def default_params_file() -> str:
    """Return the package's config/perception.yaml (installed share, else the source tree)."""
    candidates = []
    prefix = os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep)
    candidates += [os.path.join(p, 'share', 'tipsv2_ros', 'config', 'perception.yaml')
                   for p in prefix if p]
    candidates.append(os.path.join(os.path.dirname(__file__), '..', '..', 'config',
                                   'perception.yaml'))
    return next((os.path.normpath(c) for c in candidates if os.path.isfile(c)), '')


def ros_arguments(args) -> list:
    """Translate the shortcuts into rclpy arguments."""
    ros = ['--ros-args']
    params_file = args.params_file if args.params_file is not None else default_params_file()
    if params_file:
        ros += ['--params-file', params_file]
    if args.namespace:
        ros += ['-r', f'__ns:={"/" + args.namespace.strip("/")}']
    if args.image:
        ros += ['-r', f'image:={args.image}']
    if args.camera_info:
        ros += ['-r', f'camera_info:={args.camera_info}']
    for assignment in args.param or ():
        ros += ['-p', assignment]
    rest = list(args.ros_args or ())
    if rest[:1] == ['--ros-args']:
        rest = rest[1:]
    return ros + rest


def split_ros_args(argv) -> tuple:
    """Split ``argv`` at ``--ros-args``: (the tool's own arguments, the ROS arguments)."""
    argv = list(argv)
    if '--ros-args' not in argv:
        return argv, []
    index = argv.index('--ros-args')
    return argv[:index], argv[index:]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'node', help='run the perception node',
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--params-file', help="parameter YAML (default: the package's "
                        'config/perception.yaml; "" for none)')
    parser.add_argument('--namespace', help='node namespace, e.g. tipsv2')
    parser.add_argument('--image', help='input image topic (remaps "image")')
    parser.add_argument('--camera-info', help='input camera_info topic')
    parser.add_argument('-p', '--param', action='append', metavar='NAME:=VALUE',
                        help='set a parameter, e.g. -p backend:=torch (repeatable)')
    parser.add_argument('ros_args', nargs=argparse.REMAINDER,
                        help='further ROS arguments after --ros-args')
    parser.set_defaults(func=run)


def run(args) -> int:
    from tipsv2_ros.ros.node import main
    return main(['tipsv2_perception', *ros_arguments(args)])
