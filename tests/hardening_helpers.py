# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Helpers of the hardening tests: a node whose log is read live, health checks, /proc."""
import re
import signal
import subprocess
import threading
import time
from typing import Dict, List, Optional

import numpy as np
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
import rclpy

from tipsv2_ros.ros import processes

LABELS = ['floor', 'wall', 'person']


def frame(height=48, width=64, seed=0, channels=3):
    """Return a random uint8 frame, (H, W, C) or (H, W) for one channel."""
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


class LoggedNode:
    """``tipsv2 node`` as a child process whose output is collected line by line as it runs.

    Tests wait for a log line with `wait_for`; `stop` sends a signal and returns the exit code.
    """

    def __init__(self, params: Dict[str, object], namespace: str, extra=()):
        self.command = processes.node_command(params, namespace, extra=extra)
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors='replace')
        self.lines: List[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip('\n'))

    @property
    def output(self) -> str:
        with self._lock:
            return '\n'.join(self.lines)

    def count(self, pattern: str) -> int:
        """Count the log lines matching the regular expression ``pattern``."""
        with self._lock:
            return sum(1 for line in self.lines if re.search(pattern, line))

    def wait_for(self, pattern: str, timeout: float = 20.0, spin=None) -> Optional[str]:
        """Return the first line matching ``pattern`` (a regex), waiting up to ``timeout``."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                found = next((line for line in self.lines if re.search(pattern, line)), None)
            if found is not None or time.monotonic() > end or self.proc.poll() is not None:
                return found
            if spin is not None:
                spin()
            else:
                time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGINT, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _value(value) -> ParameterValue:
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    if isinstance(value, str):
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                          string_array_value=list(value))


def set_params(client, assignments: Dict[str, object], timeout: float = 20.0):
    """Set parameters of the node through its service; return the per-parameter results."""
    service = client.create_client(SetParameters,
                                   f'{client.ns}/tipsv2_perception/set_parameters')
    try:
        assert client.spin_until(service.service_is_ready, timeout)
        future = service.call_async(SetParameters.Request(parameters=[
            Parameter(name=name, value=_value(value)) for name, value in assignments.items()]))
        assert client.spin_until(future.done, timeout), 'set_parameters did not answer'
        return future.result().results
    finally:
        client.destroy_client(service)


def get_params(client, names, timeout: float = 20.0) -> Dict[str, object]:
    """Read parameters of the node; values as Python objects."""
    service = client.create_client(GetParameters,
                                   f'{client.ns}/tipsv2_perception/get_parameters')
    try:
        assert client.spin_until(service.service_is_ready, timeout)
        future = service.call_async(GetParameters.Request(names=list(names)))
        assert client.spin_until(future.done, timeout), 'get_parameters did not answer'
        return {name: rclpy.parameter.parameter_value_to_python(value)
                for name, value in zip(names, future.result().values)}
    finally:
        client.destroy_client(service)


def reset_peak(pid: int) -> None:
    """Reset the peak resident memory (VmHWM) of a process (Linux 4.0+), if allowed."""
    try:
        with open(f'/proc/{pid}/clear_refs', 'w') as clear_refs:
            clear_refs.write('5')
    except OSError:
        pass


def raw_image(encoding='rgb8', width=64, height=48, step=None, data_len=None, frame_id='cam',
              stamp_ns=None):
    """Return an Image with exactly the given fields (data filled with a ramp)."""
    from sensor_msgs.msg import Image
    step = width * 3 if step is None else step
    data_len = step * height if data_len is None else data_len
    msg = Image(encoding=encoding, width=width, height=height, step=step)
    msg.data.frombytes((np.arange(data_len) % 251).astype(np.uint8).tobytes())
    stamp_ns = time.time_ns() if stamp_ns is None else stamp_ns  # the ROS clock, no sim time
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = frame_id
    return msg


def provoke(node: LoggedNode, client, make_msg, pattern: str, timeout: float = 20.0) -> str:
    """Publish ``make_msg()`` every 0.5 s until the node logs a line matching ``pattern``.

    Re-sending covers the moment a new subscription takes to match on the node's side (until
    then the node skips frames nobody listens to). Returns the line.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end and node.alive():
        client.image_pub.publish(make_msg())
        line = node.wait_for(pattern, 0.5, spin=lambda: rclpy.spin_once(client, timeout_sec=0.02))
        if line:
            return line
    raise AssertionError(f'no log line matching {pattern!r} within {timeout} s; the node '
                         f'{"runs" if node.alive() else "died"}; its log:\n{node.output[-3000:]}')


def assert_intact(node: LoggedNode, client, expected: Dict[str, object],
                  topic: str = 'segmentation/labels') -> None:
    """Check that the node runs, answers a good frame and keeps the parameters ``expected``."""
    assert node.alive(), node.output[-3000:]
    if topic not in client.received:
        client.listen(topic)
    client.exchange(frame(seed=99), [topic])
    assert get_params(client, list(expected)) == expected
