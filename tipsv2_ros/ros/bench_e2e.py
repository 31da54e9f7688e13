# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The DDS half of ``tipsv2 bench``: the node end to end (the message stages: `bench_messages`).

The node runs as its own process, started the way a user starts it (``tipsv2 node`` with the
package's default parameter file, the weights and backend given with ``-p``). A client node
plays the camera and the consumer: it sends a frame with camera_info, subscribes to every
output the node publishes by default, and sends the next frame when all of them arrived.
End-to-end latency is the frame's ``header.stamp`` (taken when it is sent) to the arrival
of its last output, both on this host's ROS clock.
"""
import os
import subprocess
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, Image

from tipsv2_ros import processes
from tipsv2_ros.bench.table import ratio_row, Row, SECTIONS
from tipsv2_ros.bench.timing import paired_ratio, Samples, timed
from tipsv2_ros.ros import bench_messages, conversions
from tipsv2_ros.ros.player import camera_info_from
from tipsv2_ros.srv import Query, SetLabels

NAMESPACE = '/tipsv2_bench'
IMAGE_OUTPUTS = ('depth/image', 'depth/colored', 'normals/image', 'normals/colored',
                 'segmentation/labels', 'segmentation/confidence', 'segmentation/colored')
# Labels no default parameter file uses, so their embeddings are not cached in the node.
FRESH_LABELS = tuple(f'bench object {name}' for name in 'abcdefghij')


class BenchClient(Node):
    """Sends frames to the node and records when each output of each frame arrives."""

    def __init__(self, tasks, namespace: str = NAMESPACE):
        super().__init__('tipsv2_bench_client')
        self.ns = namespace
        sensor = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.image_pub = self.create_publisher(Image, f'{namespace}/image', sensor)
        self.info_pub = self.create_publisher(CameraInfo, f'{namespace}/camera_info', sensor)
        self.set_labels = self.create_client(SetLabels, f'{namespace}/set_labels')
        self.query = self.create_client(Query, f'{namespace}/query')
        self.outputs = [t for t in IMAGE_OUTPUTS if t.split('/')[0] in tasks]
        if 'depth' in tasks:
            self.outputs.append('depth/camera_info')
        self.arrivals: Dict[int, Dict[str, int]] = {}
        self.last: Dict[str, object] = {}
        for topic in self.outputs:
            kind = CameraInfo if topic.endswith('camera_info') else Image
            self.create_subscription(kind, f'{namespace}/{topic}',
                                     lambda msg, topic=topic: self._on_output(topic, msg), 10)

    def _on_output(self, topic: str, msg) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self.arrivals.setdefault(stamp, {})[topic] = self.get_clock().now().nanoseconds
        self.last[topic] = msg

    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            # spin_once returns as soon as a message is in; a long wait keeps this process
            # off the CPU the node computes on (10 ms polls cost 3% of a core in rclpy).
            rclpy.spin_once(self, timeout_sec=min(0.25, max(0.0, end - time.monotonic())))
        return done()

    def ready(self) -> bool:
        return (self.image_pub.get_subscription_count() > 0
                and self.set_labels.service_is_ready()
                and all(self.count_publishers(f'{self.ns}/{t}') > 0 for t in self.outputs))

    def send(self, msg: Image, info: CameraInfo) -> int:
        now = self.get_clock().now()
        msg.header.stamp = info.header.stamp = now.to_msg()
        self.info_pub.publish(info)
        self.image_pub.publish(msg)
        return now.nanoseconds

    def latency(self, stamp: int, timeout: float) -> Optional[float]:
        """Wait for every output of the frame ``stamp``; return seconds to the last one."""
        if not self.spin_until(lambda: len(self.arrivals.get(stamp, ())) == len(self.outputs),
                               timeout):
            return None
        return (max(self.arrivals.pop(stamp).values()) - stamp) / 1e9


def end_to_end(params: Dict[str, object], tasks, frame: np.ndarray,
               in_process: Callable[[], object], iterations: int, warmup: int,
               start_timeout: float, threads: int, log: Callable[[str], None]) -> List[Row]:
    """Run the node as a process and measure it over DDS: latency, P3, P6 hiccup, P7."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryFile('w+') as output:
        # The package's parameter file (params_file None): the node as users run it.
        proc = subprocess.Popen(processes.node_command(params, NAMESPACE, params_file=None),
                                stdout=output, stderr=subprocess.STDOUT, env=env)
        client = BenchClient(tasks)
        try:
            log(f'waiting for the node (pid {proc.pid}) to load the model...')
            started = client.spin_until(lambda: client.ready() or proc.poll() is not None,
                                        start_timeout)
            if not started or proc.poll() is not None:
                raise RuntimeError(f'the node did not start within {start_timeout:.0f} s')
            return _measure(client, frame, in_process, iterations, warmup, log)
        except RuntimeError as error:
            output.seek(0)
            raise RuntimeError(f'{error}; the node printed:\n{output.read()[-3000:]}') from None
        finally:
            client.destroy_node()
            processes.stop(proc)


def _measure(client: BenchClient, frame, in_process, iterations, warmup, log) -> List[Row]:
    msg = conversions.array_to_image(frame, 'rgb8', None)
    msg.header.frame_id = 'camera_optical_frame'
    height, width = frame.shape[:2]
    info = camera_info_from({'width': width, 'height': height, 'fx': 0.8 * width,
                             'fy': 0.8 * width, 'cx': (width - 1) / 2,
                             'cy': (height - 1) / 2}, msg.header.frame_id)

    def one() -> float:
        latency = client.latency(client.send(msg, info), 300.0)
        if latency is None:
            raise RuntimeError('the node published no complete output set within 300 s')
        return latency
    _first_frame(client, msg, info)
    for _ in range(warmup):
        one()
    e2e, local = Samples(), Samples()
    for _ in range(iterations):  # interleaved: a frame over DDS, then the same in process
        e2e.append(one())
        local.append(timed(in_process))
    log(f'end to end p50 {e2e.p50 * 1e3:.0f} ms, in process {local.p50 * 1e3:.0f} ms')
    outputs = len(client.outputs)
    rows = [Row.timing(SECTIONS[1], f'node end to end: stamp -> last of {outputs} outputs '
                       'received by a subscriber', e2e, note='tipsv2 node process, default '
                       'parameter file; frames sent one at a time'),
            Row.timing(SECTIONS[1], 'in-process inference of the same frame (Pipeline.run)',
                       local, note='interleaved with the frames over DDS'),
            ratio_row('P3: node end to end / in-process inference', paired_ratio(e2e, local),
                      1.15, "messages, DDS and the node's threads on top of inference",
                      p50=e2e.p50, p90=e2e.p90)]
    sizes = {topic: len(serialize_message(m)) for topic, m in client.last.items()}
    total = sum(sizes.values())
    parts = ', '.join(f'{t} {n / 1e6:.2f}' for t, n in sizes.items())
    rows.append(Row(SECTIONS[2], 'P7: bytes published per frame, default settings',
                    value=f'{total / 1e6:.2f} MB', target='<= 2 MB', passed=total <= 2e6,
                    note=f'serialized, MB: {parts}'))
    rows.append(_hiccup(client, one, e2e.p50, msg, info))
    return rows + _queries(client, e2e, iterations)


def _first_frame(client: BenchClient, msg, info, timeout: float = 600.0) -> None:
    """Send frames until one complete output set arrives, then let the node go idle.

    The node's best-effort subscription can match our publisher a moment after we see the
    match, and a best-effort frame sent before that is lost for good; the first frame also
    pays the node's lazy initialisation.
    """
    def complete():
        return any(len(v) == len(client.outputs) for v in client.arrivals.values())
    end = time.monotonic() + timeout
    while not complete() and time.monotonic() < end:
        client.send(msg, info)
        client.spin_until(complete, 5.0)
    if not complete():
        raise RuntimeError(f'the node published no complete output set within {timeout:.0f} s')
    quiet_since, count = time.monotonic(), len(client.arrivals)
    while time.monotonic() - quiet_since < 3.0:  # outputs of frames still in the node
        rclpy.spin_once(client, timeout_sec=0.05)
        if len(client.arrivals) != count:
            quiet_since, count = time.monotonic(), len(client.arrivals)
    client.arrivals.clear()


def _hiccup(client: BenchClient, one, baseline: float, msg, info) -> Row:
    """Frame latency while a cold label change is encoded in the node (P6)."""
    name = 'P6 hiccup: frame latency during a cold set_labels (10 x 9)'
    if not client.set_labels.service_is_ready():
        return Row.skipped(SECTIONS[2], name, 'set_labels service not available')
    done = {}
    stamp = client.send(msg, info)
    start = time.monotonic()
    future = client.set_labels.call_async(SetLabels.Request(labels=list(FRESH_LABELS)))
    future.add_done_callback(lambda _: done.setdefault('at', time.monotonic()))
    overlapped = [client.latency(stamp, 300.0)]
    while not future.done():
        overlapped.append(one())
    if not client.spin_until(future.done, 300.0) or not future.result().success:
        return Row.skipped(SECTIONS[2], name, 'set_labels failed or timed out')
    change = done['at'] - start
    after = one()
    worst = max(lat for lat in overlapped if lat is not None)
    hiccup = worst - baseline
    return Row(SECTIONS[2], name, worst, worst, value=f'{hiccup * 1e3:+.0f} ms',
               target='no frame waits', passed=hiccup < change,
               note=f'the set_labels call took {change * 1e3:.0f} ms while {len(overlapped)} '
               f'frame(s) ran; worst frame {worst * 1e3:.0f} ms vs p50 {baseline * 1e3:.0f} ms, '
               f'next frame {after * 1e3:.0f} ms. A frame that waited would be late by the '
               'whole change; PASS when the hiccup is below it (frames only share the CPU)')


def _queries(client: BenchClient, frames: Samples, iterations: int) -> List[Row]:
    """Time the query service's round trip, a cached and an uncached phrase, vs the frame.

    The node answers on its latest frame's kept features: an uncached phrase costs one text
    encoding (the active templates) and the product, a cached one the product only.
    """
    names = {'cached': ('query latency, cached phrase (service round trip) / frame time', 0.1),
             'uncached': ('query latency, uncached phrase (service round trip) / frame time',
                          0.5)}
    why = None
    if not any(topic.startswith('segmentation') for topic in client.outputs):
        why = 'needs the segmentation task'
    elif not client.spin_until(client.query.service_is_ready, 10.0):
        why = 'query service not available'
    if why:
        return [Row.skipped(SECTIONS[2], name, why, f'<= {limit:g}')
                for name, limit in names.values()]

    def call(phrase: str) -> float:
        start = time.perf_counter()
        future = client.query.call_async(Query.Request(phrases=[phrase]))
        if not client.spin_until(future.done, 120.0) or not future.result().success:
            raise RuntimeError(f'query {phrase!r} failed: '
                               f'{future.result().message if future.done() else "timeout"}')
        return time.perf_counter() - start
    samples = {'cached': Samples(), 'uncached': Samples()}
    try:
        call('fire extinguisher')  # a first query: the phrase is cached from here on
        for i in range(iterations):  # in turn, so that both see the same machine load
            samples['cached'].append(call('fire extinguisher'))
            samples['uncached'].append(call(f'bench query phrase {i} {time.monotonic_ns()}'))
    except RuntimeError as error:
        return [Row.skipped(SECTIONS[2], name, str(error)[:200], f'<= {limit:g}')
                for name, limit in names.values()]
    rows = []
    for kind, (name, limit) in names.items():
        values = samples[kind]
        note = (f'p50 {values.p50 * 1e3:.1f} ms vs node end to end p50 {frames.p50 * 1e3:.0f} '
                'ms; ' + ('the matrix product on the kept features' if kind == 'cached' else
                          'one text encoding (9 templates) + the product'))
        rows.append(ratio_row(name, values.p50 / frames.p50, limit, note, p50=values.p50,
                              p90=values.p90))
    return rows


def run(sections, **kwargs) -> List[Row]:
    """Initialise rclpy, run the DDS sections asked for, shut down; return their rows."""
    rows = []
    owned = not rclpy.ok()  # a test session may hold the context already
    if owned:
        rclpy.init()
    try:
        if 'stages' in sections:
            rows += bench_messages.message_stages(*kwargs['message_args'])
        if sections & {'e2e', 'P3', 'P6', 'P7'}:
            rows += end_to_end(**kwargs['e2e_args'])
    finally:
        if owned:
            rclpy.try_shutdown()
    return rows
