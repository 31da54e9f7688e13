# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""What ``launch/perception.launch.py`` makes of its arguments (plain Python, testable).

Launch arguments are strings; these turn them into the node's namespace, parameter
overrides and ROS arguments. An empty argument means "as the parameter file says".
"""
from typing import Dict, List

LOG_LEVELS = ('debug', 'info', 'warn', 'error', 'fatal')
_TRUE, _FALSE = ('true', '1', 'yes', 'on'), ('false', '0', 'no', 'off')


def flag(name: str, text: str) -> bool:
    """Parse a launch argument such as ``use_sim_time:=true``."""
    value = text.strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ValueError(f'launch argument {name}: expected true or false, not {text!r}')


def namespace(text: str) -> str:
    """Return the node's absolute namespace: '' and '/' are the root namespace."""
    parts = [part for part in text.strip().split('/') if part]
    return '/' + '/'.join(parts)


def parameter_overrides(args: Dict[str, str]) -> Dict[str, object]:
    """Return the parameters the launch arguments set on top of the parameter file."""
    overrides = {'use_sim_time': flag('use_sim_time', args.get('use_sim_time', 'false'))}
    for name in ('backend', 'image_transport'):
        if args.get(name, '').strip():
            overrides[name] = args[name].strip()
    if args.get('autostart', '').strip():
        overrides['autostart'] = flag('autostart', args['autostart'])
    if flag('rviz', args.get('rviz', 'false')):
        overrides['publish_points'] = True  # RViz's cloud display shows depth/points
    return overrides


def ros_arguments(args: Dict[str, str]) -> List[str]:
    """Return the node's ROS arguments (its log level)."""
    level = args.get('log_level', 'info').strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f'launch argument log_level: one of {", ".join(LOG_LEVELS)}, '
                         f'not {level!r}')
    return ['--ros-args', '--log-level', level]
