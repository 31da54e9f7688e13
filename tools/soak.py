# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Soak the perception node: many frames over real DDS, printing memory, threads and fds.

Starts ``tipsv2 node`` on random weights (tiny or B/14-sized), streams frames to it with
camera_info, subscribes to every output, swaps label sets of different sizes every
``--label-every`` processed frames, and reads the node's /proc figures as it goes. The run
ends when ``--frames`` frames were processed (seen on segmentation/labels). Growth is
measured from the end of the warm-up (``--warmup`` processed frames).

Usage (after ``. scripts/env.sh``):
    python tools/soak.py                                   # 10,000 frames, tiny model
    python tools/soak.py --variant b14 --input-size 224 --frames 300 --warmup 30
"""
import argparse
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time

from tipsv2_ros.ros import processes

_ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUTS = ('depth/image', 'depth/colored', 'normals/image', 'normals/colored',
           'segmentation/labels', 'segmentation/confidence', 'segmentation/colored')
LABEL_SETS = (['floor', 'wall'], ['sky', 'person', 'tree', 'car', 'chair'])


def _arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--variant', default='tiny', help='random weights: tiny or b14')
    parser.add_argument('--input-size', type=int, default=112)
    parser.add_argument('--frames', type=int, default=10_000, help='frames to process')
    parser.add_argument('--warmup', type=int, default=500, help='processed frames of warm-up')
    parser.add_argument('--rate', type=float, default=100.0, help='camera rate, Hz')
    parser.add_argument('--size', default='64x48', help='camera frames, WxH')
    parser.add_argument('--label-every', type=int, default=250,
                        help='swap the label set every N processed frames (0: never)')
    parser.add_argument('--report-every', type=float, default=30.0, help='seconds')
    return parser.parse_args(argv)


def _thread_names(pid):
    names = []
    for task in os.listdir(f'/proc/{pid}/task'):
        with open(f'/proc/{pid}/task/{task}/comm') as comm:
            names.append(comm.read().strip())
    return sorted(names)


def _start_node(weights_dir, args, namespace):
    from tipsv2_ros.model import random_weights
    paths = random_weights.write_random_checkpoint(weights_dir, args.variant, seed=0)
    params = {'model.vision_weights': str(paths.vision), 'model.text_weights': str(paths.text),
              'model.tokenizer': str(paths.tokenizer), 'model.depth_head': str(paths.depth_head),
              'model.normals_head': str(paths.normals_head), 'backend': 'torch',
              'model.input_size': args.input_size, 'publish_points': True}
    return subprocess.Popen(processes.node_command(params, namespace))


class _Soak:
    """The camera and the listener: counts outputs, checks order and label agreement."""

    def __init__(self, namespace, args):
        import numpy as np
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from std_msgs.msg import String

        from tipsv2_ros.msg import LabelInfo
        from tipsv2_ros.srv import SetLabels
        self.node = Node('soak_camera')
        ns = '/' + namespace
        width, height = (int(v) for v in args.size.split('x'))
        rng = np.random.default_rng(0)
        self.frames = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
                       for _ in range(4)]
        self.info = CameraInfo(width=width, height=height, distortion_model='plumb_bob',
                               d=[0.0] * 5, k=[200.0, 0, width / 2, 0, 200.0, height / 2,
                                               0, 0, 1], r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0])
        self.image_pub = self.node.create_publisher(Image, f'{ns}/image', 1)
        self.info_pub = self.node.create_publisher(CameraInfo, f'{ns}/camera_info', 1)
        self.set_labels = self.node.create_client(SetLabels, f'{ns}/set_labels')
        self.request = SetLabels.Request
        self.counts = dict.fromkeys(OUTPUTS, 0)
        self.last_stamp, self.problems, self.status = {}, [], {}
        # (source timestamp, value): the node's publication order, which the executor here
        # does not keep across topics; matched after the run.
        self.label_counts, self.mask_tops = [], []
        for topic in OUTPUTS:
            self.node.create_subscription(
                Image, f'{ns}/{topic}', lambda msg, info, t=topic: self._on_output(t, msg, info),
                5)
        self.node.create_subscription(PointCloud2, f'{ns}/depth/points', lambda msg: None, 5)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(LabelInfo, f'{ns}/segmentation/label_info',
                                      self._on_labels, latched)
        self.node.create_subscription(String, f'{ns}/tipsv2_perception/status',
                                      lambda msg: setattr(self, 'status', json.loads(msg.data)),
                                      10)

    def _on_labels(self, msg, info):
        self.label_counts.append((info['source_timestamp'], len(msg.class_names)))

    def _on_output(self, topic, msg, info):
        from tipsv2_ros.ros import conversions
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if stamp <= self.last_stamp.get(topic, -1):
            self.problems.append(f'{topic}: stamp {stamp} after {self.last_stamp[topic]}')
        self.last_stamp[topic] = stamp
        self.counts[topic] += 1
        if topic == 'segmentation/labels':
            top = int(conversions.image_to_array(msg).max())
            self.mask_tops.append((info['source_timestamp'], top))

    def check_masks(self) -> int:
        """Check every mask against the label info published before it; return the count."""
        events = sorted([(t, 0, n) for t, n in self.label_counts]
                        + [(t, 1, top) for t, top in self.mask_tops])
        labels = None
        for _, kind, value in events:
            if kind == 0:
                labels = value
            elif labels is None or value >= labels:
                self.problems.append(f'mask value {value} with {labels} labels')
        return len(self.mask_tops)

    def send(self, index):
        from tipsv2_ros.ros import conversions
        msg = conversions.array_to_image(self.frames[index % 4], 'rgb8')
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = 'soak_camera'
        self.info.header = msg.header
        self.info_pub.publish(self.info)
        self.image_pub.publish(msg)


def main(argv=None) -> int:
    """Run the soak; print figures every --report-every seconds and a summary at the end."""
    args = _arguments(argv)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE',
                          str(_ROOT / 'config' / 'fastdds_shm.xml'))
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 100)))
    import rclpy
    rclpy.init()
    namespace = f'soak_{os.getpid()}'
    with tempfile.TemporaryDirectory() as weights_dir:
        proc = _start_node(weights_dir, args, namespace)
        soak = _Soak(namespace, args)
        try:
            return _run(proc, soak, args, rclpy)
        finally:
            code = processes.stop(proc, timeout=60)
            print(f'[soak] node exit code {code}', flush=True)
            soak.node.destroy_node()
            rclpy.try_shutdown()


def _run(proc, soak, args, rclpy) -> int:
    while not (soak.image_pub.get_subscription_count() and soak.set_labels.service_is_ready()):
        if proc.poll() is not None:
            print('[soak] the node did not start', flush=True)
            return 1
        rclpy.spin_once(soak.node, timeout_sec=0.1)
    start = next_report = time.monotonic()
    sent, base, swaps, calls = 0, None, 0, []
    period, next_send = 1.0 / args.rate, time.monotonic()
    while soak.counts['segmentation/labels'] < args.frames:
        if proc.poll() is not None:
            print(f'[soak] the node died with code {proc.returncode}', flush=True)
            return 1
        soak.send(sent)
        sent += 1
        next_send += period
        while time.monotonic() < next_send:
            rclpy.spin_once(soak.node, timeout_sec=max(0.0, next_send - time.monotonic()))
        done = soak.counts['segmentation/labels']
        if base is None and done >= args.warmup:
            base, base_threads = processes.figures(proc.pid), _thread_names(proc.pid)
            print(f'[soak] warm-up done after {done} frames: {base}', flush=True)
        if args.label_every and done >= (swaps + 1) * args.label_every and (
                not calls or calls[-1].done()):
            swaps += 1
            calls.append(soak.set_labels.call_async(soak.request(labels=LABEL_SETS[swaps % 2])))
        if time.monotonic() >= next_report or done >= args.frames:
            next_report += args.report_every
            print(f'[soak] {time.monotonic() - start:7.0f} s: sent {sent}, processed {done}, '
                  f'node {_status(soak.status)}, /proc {processes.figures(proc.pid)}', flush=True)
    end = processes.figures(proc.pid)
    if base is not None and end['Threads'] != base['Threads']:
        print(f'[soak] threads after warm-up: {base_threads}\n[soak] threads at the end: '
              f'{_thread_names(proc.pid)}', flush=True)
    elapsed = time.monotonic() - start
    failed = [c for c in calls if c.done() and not c.result().success]
    checked = soak.check_masks()
    print(f'[soak] done: {done} frames processed of {sent} sent in {elapsed:.0f} s '
          f'({done / elapsed:.1f}/s); {swaps} label swaps; outputs {soak.counts}', flush=True)
    base = base or end
    print(f'[soak] after warm-up -> end: RSS {base["VmRSS"] / 1024:.1f} -> '
          f'{end["VmRSS"] / 1024:.1f} MB ({(end["VmRSS"] - base["VmRSS"]) / 1024:+.1f} MB), '
          f'peak {end["VmHWM"] / 1024:.1f} MB, threads {base["Threads"]} -> '
          f'{end["Threads"]}, fds {base["fds"]} -> {end["fds"]}', flush=True)
    problems = soak.problems + [f'set_labels refused: {c.result().message}' for c in failed]
    print(f'[soak] {checked} masks checked against their label info; problems: '
          f'{problems[:10] or "none"}', flush=True)
    grew = end['VmRSS'] - base['VmRSS'] > 20 * 1024 or end['Threads'] != base['Threads'] or \
        end['fds'] != base['fds']
    return 1 if problems or grew else 0


def _status(status):
    keys = ('frames_received', 'frames_processed', 'frames_dropped', 'bad_frames', 'errors',
            'last_latency_ms')
    return {k: status.get(k) for k in keys}


if __name__ == '__main__':
    sys.exit(main())
