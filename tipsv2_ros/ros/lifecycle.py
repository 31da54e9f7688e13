# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Start-up, spinning and shutdown of the perception node process.

With ``autostart`` (the default) start-up reads the parameters and loads the weights before
the node exists, so a failure exits 1 with one clear line and no topic or service of the
node ever appears; the node then configures (adopting what was loaded) and activates itself.
With ``autostart: false`` the node starts unconfigured and a lifecycle manager drives it
(`managed`); a configure failure then leaves it unconfigured, and the process runs on. While the
node runs, an exception that escapes a callback is logged and counted, never fatal.
SIGINT and SIGTERM (rclpy 9 handles both: SIGINT raises KeyboardInterrupt in the spinning
thread, SIGTERM shuts the context down, which ends ``spin``) let callbacks in flight and the
frame in inference finish, then exit 0.
"""
import sys
import traceback

import rclpy
from rclpy.exceptions import InvalidHandle
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter

from tipsv2_ros.ros import diagnostics, params as node_params
from tipsv2_ros.ros.node import NODE_NAME, PerceptionNode
from tipsv2_ros.runtime import startup

# rclpy's per-node ~/get_type_description service, switched off on the parameter reader.
_TYPE_DESCRIPTION_PARAM = 'start_type_description_service'


def load():
    """Read the node's parameters and build its runtime and label set, before the node exists.

    A short-lived reader node with the node's name (so that its parameter overrides, from
    ``--params-file``, ``-p`` and launch files, are the ones the node will get) declares and
    checks the parameters, and is destroyed before the weights load. It offers nothing: no
    parameter services, no type description service, no rosout.

    Returns:
        (runtime, label_set, fallbacks), or (None, None, []) with ``autostart: false``;
        fallbacks are the backend's fallback log lines.

    Raises:
        startup.StartupError, ValueError: bad weights, parameters or labels.
    """
    reader = Node(NODE_NAME, enable_rosout=False, start_parameter_services=False,
                  parameter_overrides=[Parameter(_TYPE_DESCRIPTION_PARAM, value=False)])
    try:
        node_params.declare(reader)
        params = node_params.NodeParams.from_node(reader)
        values, logger = params.values, reader.get_logger()
    finally:
        reader.destroy_node()
    if not values['autostart']:
        return None, None, []
    fallbacks = []

    def log(line):
        if diagnostics.is_fallback(line):
            fallbacks.append(line.removeprefix('WARNING: ')[:300])
        logger.info(line)
    runtime = startup.build(params.runtime_config, log=log)
    try:
        return runtime, runtime.labels.build(values['labels'], values['templates']), fallbacks
    except BaseException:
        runtime.close()
        raise


def spin(executor, node: PerceptionNode) -> None:
    """Spin until shutdown; an exception out of a callback is reported and spinning goes on.

    rclpy re-raises a callback's exception from ``spin``, which would end the process; the
    node's own callbacks catch what they expect, so this is the net under them.
    """
    while rclpy.ok():
        try:
            executor.spin()
            return
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except InvalidHandle:
            # A lifecycle transition destroyed a subscription while the other executor thread
            # was adding its QoS event handler to a wait set (rclpy does not guard that
            # case). Nothing was lost: the next wait set no longer has it.
            continue
        except Exception as error:
            if not rclpy.ok():
                return
            node.report('callback', 'a callback failed', error)


def close(executor, node) -> None:
    """Stop callbacks, then the worker, then the backend; a second Ctrl-C skips the wait."""
    try:
        if executor is not None:
            # Waits for callbacks in flight, e.g. a set_labels still embedding its text.
            executor.shutdown(timeout_sec=10.0)
        if node is not None:
            node.shutdown()
            node.destroy_node()
    except KeyboardInterrupt:
        pass
    finally:
        rclpy.try_shutdown()


def main(args=None) -> int:
    """Run the node until SIGINT/SIGTERM; exit 1 with a clear message if start-up fails."""
    rclpy.init(args=args)
    node = executor = None
    try:
        try:
            runtime, label_set, fallbacks = load()
            node = PerceptionNode(runtime, label_set, fallbacks)
            if runtime is not None:
                configured = node.trigger_configure() == TransitionCallbackReturn.SUCCESS
                if not configured or node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                    raise startup.StartupError(node.config_error or 'activation failed')
        except (startup.StartupError, ValueError) as error:
            if not rclpy.ok():  # a signal mid start-up: the transition failed on the dead context
                return 0
            print(f'[{NODE_NAME}] start-up failed: {error}', file=sys.stderr)
            return 1
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except Exception as error:
            if not rclpy.ok():  # SIGTERM during start-up: rcl calls fail on the dead context
                return 0
            traceback.print_exc()
            print(f'[{NODE_NAME}] start-up failed: unexpected {error!r}', file=sys.stderr)
            return 1
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        spin(executor, node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        close(executor, node)
    return 0
