# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Nodes (own processes, real DDS) on a mutual-TLS Triton server on loopback.

Refused links and their recovery, and the shared-memory regions of a node on the server's host.
"""
import os
import pathlib
import re
import shutil
import signal
import stat
import time

import numpy as np
import pytest

from tipsv2_ros.runtime.serving import dev_server as triton_dev

pytest.importorskip('tritonclient.grpc', reason='backend triton needs tritonclient[grpc]')
pytest.importorskip('cryptography', reason='the test certificates need cryptography')

from triton_helpers import needs_server  # noqa: E402, I100

pytestmark = [pytest.mark.ros, pytest.mark.slow, needs_server]
OUTPUTS = ['depth/image', 'normals/image', 'segmentation/labels']
LABELS = ['floor', 'wall', 'person']
REGION = re.compile(r'^tipsv2_(\d+)_[0-9a-f]{16}_(in|out)$')


@pytest.fixture(scope='module')
def server(tiny_weights, certs, tmp_path_factory):
    w, fleet = tiny_weights, certs[0]
    args = ['--vision-weights', str(w.vision), '--depth-head', str(w.depth_head),
            '--normals-head', str(w.normals_head), '--input-size', '112',
            '--grpc-use-ssl', '--grpc-use-ssl-mutual', '--grpc-server-cert', str(fleet.server),
            '--grpc-server-key', str(fleet.server_key), '--grpc-root-cert', str(fleet.ca)]
    log = tmp_path_factory.mktemp('triton') / 'server.log'
    with triton_dev.DevServer(args, log) as running:
        yield running


def _robot_params(tiny_params, server, fleet, **changes):
    params = {**tiny_params, 'labels': LABELS, 'backend': 'triton', 'triton.url': server.url,
              'triton.ssl': True, 'triton.root_cert': str(fleet.ca),
              'triton.client_cert': str(fleet.client), 'triton.client_key': str(fleet.client_key)}
    return {**params, **changes}


def _frame(seed):
    return np.random.default_rng(seed).integers(0, 255, (60, 80, 3), dtype=np.uint8)


def _start(nodes, clients, name, params):
    from ros_helpers import Client, NodeProcess
    nodes[name] = NodeProcess(params, f'tf_{name}')
    clients[name] = Client(f'tf_{name}', name=f'tf_client_{name}')
    for topic in OUTPUTS:
        clients[name].listen(topic)


def _ready(nodes, clients, name):
    assert clients[name].wait_for_node(120), nodes[name].stop() or nodes[name].output


def _stop_all(nodes, clients):
    for client in clients.values():
        client.destroy_node()
    for node in nodes.values():
        node.stop()


def test_refused_nodes_stay_alive_say_why_and_recover(ros, tiny_params, server, certs,
                                                      tmp_path):
    from tipsv2_ros.ros import conversions
    fleet, stranger = certs
    root = tmp_path / 'ca.pem'
    shutil.copy(stranger.ca, root)  # a wrong CA at the configured path
    nodes, clients = {}, {}
    try:
        _start(nodes, clients, 'ref', {**tiny_params, 'labels': LABELS})
        _start(nodes, clients, 'good', _robot_params(tiny_params, server, fleet))
        _start(nodes, clients, 'wrong_ca', _robot_params(tiny_params, server, fleet,
                                                         **{'triton.root_cert': str(root)}))
        _start(nodes, clients, 'no_cert', _robot_params(
            tiny_params, server, fleet, **{'triton.client_cert': '', 'triton.client_key': ''}))
        _start(nodes, clients, 'plain', _robot_params(
            tiny_params, server, fleet, **{'triton.ssl': False, 'triton.root_cert': '',
                                           'triton.client_cert': '', 'triton.client_key': ''}))
        for name in nodes:
            _ready(nodes, clients, name)
        # The right CA and client certificate: the same outputs as the local backend.
        _, got = clients['good'].exchange(_frame(1), OUTPUTS, timeout=60)
        _, expected = clients['ref'].exchange(_frame(1), OUTPUTS, timeout=60)
        ours = {t: conversions.image_to_array(m) for t, m in got.items()}
        reference = {t: conversions.image_to_array(m) for t, m in expected.items()}
        np.testing.assert_allclose(ours['depth/image'], reference['depth/image'], rtol=1e-4)
        np.testing.assert_allclose(ours['normals/image'], reference['normals/image'],
                                   atol=1e-4)
        assert (ours['segmentation/labels'] == reference['segmentation/labels']).mean() > 0.999
        # The refused ones: frames go in, nothing comes out, the process lives.
        refused = ('wrong_ca', 'no_cert', 'plain')
        for _ in range(10):
            for name in refused:
                clients[name].send(_frame(2))
                clients[name].spin_until(lambda: False, 0.1)
        for name in refused:
            assert not any(clients[name].received.values()), name
            assert nodes[name].proc.poll() is None, nodes[name].output
        # The operator installs the right CA where the node looks: no restart needed.
        shutil.copy(fleet.ca, root)
        sent, got = clients['wrong_ca'].exchange(_frame(3), OUTPUTS, timeout=60)
        assert all(m.header.stamp == sent.header.stamp for m in got.values())
    finally:
        _stop_all(nodes, clients)
    reasons = {'wrong_ca': 'certificate is not signed by triton.root_cert',
               'no_cert': 'requires a client certificate (mutual TLS): set triton.client_cert',
               'plain': 'it probably expects TLS (set triton.ssl: true'}
    for name, reason in reasons.items():
        log = nodes[name].output
        assert log.count('The node starts anyway') == 1 and reason in log, log[-3000:]
        assert 'Traceback' not in log, log[-3000:]
    assert 'connected to Triton' in nodes['wrong_ca'].output


def _dev_shm(pid):
    return sorted(p for p in pathlib.Path('/dev/shm').glob(f'tipsv2_{pid}_*'))


def _registered(server, fleet):
    import tritonclient.grpc as grpcclient
    client = grpcclient.InferenceServerClient(
        server.url, ssl=True, root_certificates=str(fleet.ca), private_key=str(fleet.client_key),
        certificate_chain=str(fleet.client))
    try:
        return set(client.get_system_shared_memory_status(as_json=True).get('regions', {}))
    finally:
        client.close()


def test_shared_memory_is_private_and_left_behind_by_no_exit(ros, tiny_params, server, certs):
    fleet = certs[0]
    nodes, clients = {}, {}
    try:
        _start(nodes, clients, 'shm1', _robot_params(tiny_params, server, fleet))
        _ready(nodes, clients, 'shm1')
        clients['shm1'].exchange(_frame(4), OUTPUTS, timeout=60)
        first = nodes['shm1'].proc.pid
        files = _dev_shm(first)
        assert [REGION.match(p.name).group(2) for p in files] == ['in', 'out'], files
        for path in files:
            info = path.stat()
            assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.getuid()
        stale = {p.name for p in files}
        assert stale <= _registered(server, fleet)
        nodes['shm1'].proc.send_signal(signal.SIGKILL)
        nodes['shm1'].stop()
        assert stale <= _registered(server, fleet)  # the server still maps the dead regions
        # A new node on the same host releases what the killed one left.
        _start(nodes, clients, 'shm2', _robot_params(tiny_params, server, fleet))
        _ready(nodes, clients, 'shm2')
        clients['shm2'].exchange(_frame(5), OUTPUTS, timeout=60)
        second = nodes['shm2'].proc.pid
        registered = _registered(server, fleet)
        assert not stale & registered and not _dev_shm(first), registered
        assert {p.name for p in _dev_shm(second)} <= registered and _dev_shm(second)
        assert nodes['shm2'].stop() == 0
        deadline = time.monotonic() + 5
        while _dev_shm(second) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _dev_shm(second)  # a clean exit leaves nothing, here or on the server
        assert not {n for n in _registered(server, fleet) if n.startswith('tipsv2_')}
    finally:
        _stop_all(nodes, clients)
    assert 'shared memory' in nodes['shm2'].output
    assert 'shared-memory regions left by nodes that did not exit cleanly' in nodes['shm2'].output
