# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The node's parameters for ``tipsv2 bag``: read exactly as the node reads its own.

A short-lived reader node with the node's name gets the ``--params-file`` and ``-p``
overrides through rcl (so YAML wildcards, namespaces and types behave as for the node),
declares and checks them with `params`, and is gone before any model loads. It offers
nothing: no rosout, no parameter or type description services.
"""
import os
from typing import Any, Dict, Sequence

import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions

from tipsv2_ros.ros import params as node_params
from tipsv2_ros.ros.bag_input import BagError
from tipsv2_ros.ros.node import NODE_NAME


def read_params(params_file: str, assignments: Sequence[str],
                overrides: Dict[str, Any]) -> Dict[str, Any]:
    """Return the node's parameter values from a YAML file, ``-p`` and flag overrides.

    Raises:
        BagError: a parameter is unknown to rclpy's parser, has the wrong type or value.
    """
    args = ['tipsv2_bag', '--ros-args']
    if params_file and not os.path.isfile(params_file):
        raise BagError(f'--params-file {params_file}: no such file')
    if params_file:
        args += ['--params-file', params_file]
    for assignment in assignments:
        args += ['-p', assignment]
    context = rclpy.Context()
    try:
        rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
        reader = Node(NODE_NAME, context=context, enable_rosout=False,
                      start_parameter_services=False, parameter_overrides=[
                          Parameter('start_type_description_service', value=False)])
        try:
            node_params.declare(reader)
            values = node_params.NodeParams.from_node(reader).values
        finally:
            reader.destroy_node()
    except Exception as error:  # rclpy's argument, YAML and type errors have many classes
        raise BagError(f'parameters: {str(error).strip() or type(error).__name__}') from None
    finally:
        rclpy.try_shutdown(context=context)
    values = {**values, **overrides}
    for name, value in overrides.items():
        problem = node_params.check(name, value)
        if problem:
            raise BagError(f'parameter {problem}')
    return values
