# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Shared fixtures: small random weights in the official formats and an rclpy context."""
import os
import pathlib
import random

import pytest

# scripts/test.sh sets these; a bare `python -m pytest` gets the same safe defaults: DDS
# discovery on this host only, the shared-memory profile, and a private domain.
_ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(_ROOT / 'config' / 'fastdds_shm.xml'))
os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 100)))
os.environ.setdefault('ROS_LOG_DIR', '/tmp/tipsv2_ros_log')


@pytest.fixture(scope='session')
def tiny_weights(tmp_path_factory):
    """Small random weights written in the official file formats (no download)."""
    from tipsv2_ros.model import random_weights
    return random_weights.write_random_checkpoint(tmp_path_factory.mktemp('weights'),
                                                  random_weights.SMALL, seed=0)


@pytest.fixture(scope='session')
def tiny_params(tiny_weights):
    """Node parameters naming the tiny weights; 112 is the tiny model's native input."""
    return {'model.vision_weights': str(tiny_weights.vision),
            'model.text_weights': str(tiny_weights.text),
            'model.tokenizer': str(tiny_weights.tokenizer),
            'model.depth_head': str(tiny_weights.depth_head),
            'model.normals_head': str(tiny_weights.normals_head),
            'model.input_size': 112, 'backend': 'torch'}


@pytest.fixture(scope='module')
def certs(tmp_path_factory):
    """Throwaway TLS certificates: the fleet's (server for 127.0.0.1 only) and a stranger's."""
    from tipsv2_ros.runtime.serving.certificates import write_certificates
    folder = tmp_path_factory.mktemp('certs')
    return (write_certificates(folder / 'fleet', hosts=('127.0.0.1',)),
            write_certificates(folder / 'stranger', name='a CA nobody trusts'))


@pytest.fixture(scope='session')
def ros():
    """One rclpy context for the test process (the node under test runs in its own)."""
    import rclpy
    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()
