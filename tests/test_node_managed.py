# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The node under a lifecycle manager, and its /diagnostics, over real DDS.

The transitions go through the standard lifecycle_msgs services (``~/change_state``,
``~/get_state``), as Nav2's lifecycle_manager calls them.
"""
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from hardening_helpers import frame, LABELS, LoggedNode
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
import pytest
import rclpy
from ros_helpers import Client, spin_with_reporter
from sensor_msgs.msg import CompressedImage

pytestmark = pytest.mark.ros

NAME = 'tipsv2_perception'


class ManagerClient(Client):
    """A test client that also drives the node's lifecycle and reads /diagnostics."""

    def __init__(self, namespace, name):
        super().__init__(namespace, name=name)
        node = f'{self.ns}/{NAME}'
        self.change = self.create_client(ChangeState, f'{node}/change_state')
        self.get = self.create_client(GetState, f'{node}/get_state')
        self.diagnostics = []
        self.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append, 10)

    def transition(self, transition_id: int, timeout: float = 60.0) -> bool:
        assert self.spin_until(self.change.service_is_ready, 30), 'no change_state service'
        future = self.change.call_async(
            ChangeState.Request(transition=Transition(id=transition_id)))
        assert self.spin_until(future.done, timeout), 'change_state did not answer'
        return future.result().success

    def state(self) -> str:
        assert self.spin_until(self.get.service_is_ready, 30), 'no get_state service'
        future = self.get.call_async(GetState.Request())
        assert self.spin_until(future.done, 10), 'get_state did not answer'
        return future.result().current_state.label

    def own_status(self, after: float = 0.0):
        """Return the latest of our node's DiagnosticStatus received after ``after``."""
        for array, seen in reversed(self.stamped()):
            if seen < after:
                break
            for status in array.status:
                if f'{self.ns.strip("/")}/{NAME}' in status.name:
                    return status
        return None

    def stamped(self):
        return [(a, a.header.stamp.sec + a.header.stamp.nanosec * 1e-9)
                for a in self.diagnostics]

    def wait_status(self, predicate, timeout: float = 20.0):
        start = self.get_clock().now().nanoseconds * 1e-9
        found = []

        def check():
            status = self.own_status(after=start)
            if status is not None and predicate(status):
                found.append(status)
            return bool(found)
        assert self.spin_until(check, timeout), (
            f'no matching status; last: {self.own_status()}')
        return found[0]


def _status_while_streaming(client, predicate, timeout: float = 30.0):
    """Stream frames in lock-step with the outputs (no drops) until a status matches."""
    end = time.monotonic() + timeout
    seed = 0
    while time.monotonic() < end:
        seed += 1
        sent, _ = client.exchange(frame(seed=seed % 5), ['depth/image'])
        stamp = sent.header.stamp.sec + sent.header.stamp.nanosec * 1e-9
        client.spin_until(lambda: False, 0.1)
        status = client.own_status(after=stamp)
        if status is not None and predicate(status):
            return status
    raise AssertionError(f'no matching status while streaming; last: {client.own_status()}')


def _values(status):
    return {kv.key: kv.value for kv in status.values}


@pytest.fixture(scope='module')
def managed(ros, tiny_params):
    """Start a node with autostart: false (its log read live) and a manager client."""
    params = {**tiny_params, 'labels': LABELS, 'autostart': False, 'warn_after': 1.0}
    with LoggedNode(params, 'tmanaged') as node:
        client = ManagerClient('tmanaged', 'managed_client')
        try:
            yield node, client
        finally:
            client.destroy_node()


def test_lifecycle_transitions_through_the_standard_services(managed):
    node, client = managed
    assert client.state() == 'unconfigured'
    # Unconfigured: no model, no set_labels, no frame subscription; health says why.
    status = client.wait_status(lambda s: 'unconfigured' in s.message)
    assert status.level == DiagnosticStatus.WARN
    assert not client.set_labels.service_is_ready()
    assert client.image_pub.get_subscription_count() == 0

    assert client.transition(Transition.TRANSITION_CONFIGURE)
    assert client.state() == 'inactive'
    assert client.spin_until(client.set_labels.service_is_ready, 10)
    assert client.image_pub.get_subscription_count() == 0  # inactive: not listening yet

    assert client.transition(Transition.TRANSITION_ACTIVATE)
    assert client.state() == 'active'
    client.listen('depth/image')
    client.exchange(frame(), ['depth/image'])

    assert client.transition(Transition.TRANSITION_DEACTIVATE)
    assert client.state() == 'inactive'
    assert client.spin_until(lambda: client.image_pub.get_subscription_count() == 0, 10)
    client.clear()
    for seed in range(3):
        client.send(frame(seed=seed))
        client.spin_until(lambda: False, 0.3)
    assert client.received['depth/image'] == []  # deactivated: no inference
    # The model stayed loaded: labels still change, and activation is immediate.
    assert client.call_set_labels(['floor', 'person']).success
    started = time.monotonic()
    assert client.transition(Transition.TRANSITION_ACTIVATE)
    assert time.monotonic() - started < 5
    client.exchange(frame(seed=5), ['depth/image'])
    assert client.call_set_labels(LABELS).success

    assert client.transition(Transition.TRANSITION_DEACTIVATE)
    assert client.transition(Transition.TRANSITION_CLEANUP)
    assert client.state() == 'unconfigured'
    assert client.spin_until(lambda: not client.set_labels.service_is_ready(), 10)
    assert 'configure failed' not in node.output


def _activate(client) -> None:
    """Bring the node to active from wherever an earlier test left it."""
    if client.state() == 'unconfigured':
        assert client.transition(Transition.TRANSITION_CONFIGURE)
    if client.state() == 'inactive':
        assert client.transition(Transition.TRANSITION_ACTIVATE)


def test_diagnostics_warn_when_frames_stop_and_name_the_cause(managed):
    node, client = managed
    _activate(client)
    client.listen('depth/image')
    status = _status_while_streaming(client, lambda s: s.level == DiagnosticStatus.OK)
    assert NAME in status.name
    values = _values(status)
    assert values['state'] == 'active' and int(values['frames_processed']) >= 1
    assert float(values['frames_per_second']) > 0
    # Frames stop: after warn_after (1 s) the status turns WARN and says so.
    status = client.wait_status(lambda s: s.level == DiagnosticStatus.WARN, 15)
    assert 'no frames' in status.message, status.message
    # A publisher of the wrong type (a compressed stream on the raw topic) is named as such.
    # (From another DDS participant: one participant cannot have both types on a topic.)
    context = rclpy.Context()
    context.init()
    other = rclpy.create_node('wrong_type_camera', context=context)
    try:
        other.create_publisher(CompressedImage, f'{client.ns}/image', 1)
        status = client.wait_status(lambda s: 'type mismatch' in s.message, 15)
        assert 'image_transport: compressed' in status.message
        assert status.level == DiagnosticStatus.WARN
    finally:
        other.destroy_node()
        context.try_shutdown()
    # Frames again: back to OK.
    _status_while_streaming(client, lambda s: s.level == DiagnosticStatus.OK)


def test_transitions_while_frames_stream_lose_nothing_but_frames(managed):
    """Deactivate and activate while a camera streams at ~30 Hz: no error, no stale state."""
    node, client = managed
    _activate(client)
    client.listen('depth/image')
    client.spin_until(lambda: client.status is not None, 5)
    errors = client.status['errors']
    for round_ in range(3):
        futures = []
        for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_ACTIVATE):
            futures.append(client.change.call_async(
                ChangeState.Request(transition=Transition(id=transition))))
            end = time.monotonic() + 20
            while not futures[-1].done() and time.monotonic() < end:
                client.send(frame(seed=round_))
                client.spin_until(lambda: False, 0.03)
            assert futures[-1].done() and futures[-1].result().success
    assert client.state() == 'active'
    client.exchange(frame(seed=9), ['depth/image'])
    client.spin_until(lambda: False, 1.5)
    assert client.status['errors'] == errors, node.output[-3000:]
    assert client.status['state'] == 'active'  # ~/status carries the lifecycle state too
    assert node.alive() and 'Traceback' not in node.output


def test_shutdown_transition_finalizes_and_the_process_exits_cleanly(managed):
    node, client = managed
    assert client.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN
                             if client.state() == 'active'
                             else Transition.TRANSITION_UNCONFIGURED_SHUTDOWN
                             if client.state() == 'unconfigured'
                             else Transition.TRANSITION_INACTIVE_SHUTDOWN)
    assert client.state() == 'finalized'
    assert node.stop() == 0, node.output
    assert 'Traceback' not in node.output


def test_configure_failure_leaves_the_node_unconfigured_with_the_reason(
        ros, tiny_params, tmp_path):
    params = {**tiny_params, 'autostart': False,
              'model.vision_weights': str(tmp_path / 'absent.npz')}
    with LoggedNode(params, 'tmanaged_bad') as node:
        client = ManagerClient('tmanaged_bad', 'managed_bad_client')
        try:
            assert client.state() == 'unconfigured'
            assert not client.transition(Transition.TRANSITION_CONFIGURE)
            assert client.state() == 'unconfigured'
            status = client.wait_status(lambda s: s.level == DiagnosticStatus.ERROR)
            assert 'configure failed' in status.message
            assert 'no such file' in status.message, status.message
            assert node.alive() and 'no such file' in node.output
            assert not client.set_labels.service_is_ready()
            # Still manageable: a second attempt fails the same way, the process lives on.
            assert not client.transition(Transition.TRANSITION_CONFIGURE)
            assert node.alive()
        finally:
            client.destroy_node()
        assert node.stop() == 0, node.output


def test_diagnostics_error_while_triton_is_unreachable(ros, tiny_params):
    import socket
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    params = {**tiny_params, 'backend': 'triton', 'triton.url': f'127.0.0.1:{port}',
              'triton.timeout': 1.0}
    with LoggedNode(params, 'ttriton_down') as node:
        client = ManagerClient('ttriton_down', 'triton_down_client')
        try:
            status = client.wait_status(lambda s: s.level == DiagnosticStatus.ERROR, 60)
            assert f'Triton unreachable at 127.0.0.1:{port}' in status.message, status.message
            assert 'not connected' in _values(status)['backend']
            assert client.state() == 'active' and node.alive()
        finally:
            client.destroy_node()


def test_the_backends_fallback_lines_are_recognised():
    """/diagnostics reports a fallback from the backends' own log lines: keep them in step."""
    import pathlib

    from tipsv2_ros.ros import diagnostics
    backends = pathlib.Path(diagnostics.__file__).parents[1] / 'runtime' / 'backends'
    export = backends.parent / 'export'
    sources = {name: (backends / name).read_text()
               for name in ('__init__.py', 'tensorrt/backend.py')}
    sources['int8_gate.py'] = (export / 'int8_gate.py').read_text()
    assert 'is not usable ({error}); trying the next one' in sources['__init__.py']
    assert 'backend auto on a CUDA device without TensorRT' in sources['__init__.py']
    assert "f'falling back to {_describe(following, LEVELS)}" in sources['tensorrt/backend.py']
    assert '; falling back to fp32' in sources['int8_gate.py']
    assert diagnostics.is_fallback('backend auto: tensorrt is not usable (no GPU); trying the '
                                   'next one')
    assert diagnostics.is_fallback('WARNING: the TensorRT fp16 engines fail the parity gate '
                                   '(depth 3%); falling back to fp16-safe. Their output is '
                                   'not used.')
    assert diagnostics.is_fallback('WARNING: backend auto on a CUDA device without TensorRT: '
                                   'no module named tensorrt. The image path runs about 3x '
                                   'slower than with TensorRT fp16.')
    assert not diagnostics.is_fallback('backend auto -> torch on cpu at 448x448 (fp32)')


def test_an_entity_destroyed_under_the_executor_is_not_an_error(ros):
    """The spin loop goes on and counts nothing when rclpy raises InvalidHandle.

    rclpy raises it out of spin when a transition destroys a subscription while the other
    executor thread adds the subscription's event handler to a wait set.
    """
    from rclpy.exceptions import InvalidHandle

    class Reporter:
        errors = []

        def report(self, key, what, error):
            self.errors.append(error)

    node = rclpy.create_node('invalid_handle_net')
    calls = []

    def tick():
        calls.append(1)
        if len(calls) == 2:
            raise InvalidHandle('cannot use Destroyable because destruction was requested')

    node.create_timer(0.02, tick)
    reporter = Reporter()
    spin_with_reporter(node, reporter, lambda: len(calls) >= 6)
    assert len(calls) >= 6 and reporter.errors == []
