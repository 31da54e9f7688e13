# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Start-up failures, SIGINT/SIGTERM mid-work, restart, and the callback safety net."""
import json
import shutil
import signal
import time

from hardening_helpers import frame, LABELS, LoggedNode
import pytest
import rclpy
from rclpy.node import Node
from ros_helpers import Client, spin_with_reporter

from tipsv2_ros import weights
from tipsv2_ros.srv import SetLabels

pytestmark = pytest.mark.ros


def _truncated(path, tmp_path):
    data = path.read_bytes()
    out = tmp_path / f'truncated_{path.name}'
    out.write_bytes(data[:len(data) // 2])
    return str(out)


def _corrupt(path, tmp_path):
    out = tmp_path / f'corrupt_{path.name}'
    out.write_bytes(bytes(range(256)) * 40)
    return str(out)


def _wrong_variant(tiny_weights, tmp_path):
    """Lay out tiny files as b14 ones, as `tipsv2 download b14` names them."""
    folder = weights.variant_dir('b14', tmp_path / 'cache')
    folder.mkdir(parents=True)
    source = tiny_weights._asdict()
    for remote in weights.official_files('b14', 'gcs'):
        shutil.copy(source[remote.roles[0]], folder / remote.name)
    return {'model.vision_weights': '', 'model.text_weights': '', 'model.tokenizer': '',
            'model.depth_head': '', 'model.normals_head': '', 'model.variant': 'b14',
            'model.weights_dir': str(tmp_path / 'cache')}


def _bad_config(tmp_path):
    """Write a model config whose heads do not divide the width."""
    path = tmp_path / 'model.json'
    path.write_text(json.dumps({'vision': {'embed_dim': 64, 'depth': 4, 'num_heads': 5},
                                'text': {'hidden_size': 64, 'mlp_dim': 256, 'num_heads': 4,
                                         'num_layers': 2},
                                'dpt': {'intermediate_layers': [0, 1, 2, 3],
                                        'post_process_channels': [8, 16, 32, 64]}}))
    return {'model.config': str(path)}


STARTUP_FAILURES = {
    'missing-vision-weights': (lambda w, t: {'model.vision_weights': str(t / 'absent.npz')},
                               'model.vision_weights: no such file'),
    'truncated-text-weights': (lambda w, t: {'model.text_weights': _truncated(w.text, t)},
                               'truncated or corrupt'),
    'corrupt-depth-head': (lambda w, t: {'model.depth_head': _corrupt(w.depth_head, t)},
                           'truncated or corrupt'),
    'corrupt-tokenizer': (lambda w, t: {'model.tokenizer': _corrupt(w.tokenizer, t)},
                          'not a SentencePiece model'),
    'wrong-variant': (_wrong_variant, "variant 'b14' was requested but the file's shapes"),
    'bad-model-config': (lambda w, t: _bad_config(t),
                         'model.json: vision.embed_dim 64 is not a multiple of num_heads 5'),
    'bad-labels': (lambda w, t: {'labels': ['door', 'Door']}, 'duplicate label'),
    'bad-input-size': (lambda w, t: {'model.input_size': 100}, 'multiples of 14'),
}


@pytest.mark.parametrize('case', STARTUP_FAILURES)
def test_startup_failure_exits_1_with_a_clear_line_and_no_trace_in_the_graph(
        ros, tiny_params, tiny_weights, tmp_path, case):
    make, message = STARTUP_FAILURES[case]
    namespace = f'hbad_{case.replace("-", "_")}'
    watcher = Node(f'watch_{case.replace("-", "_")}')
    seen = set()
    try:
        with LoggedNode({**tiny_params, **make(tiny_weights, tmp_path)}, namespace) as node:
            while node.alive():  # watch the graph for as long as the process lives
                names = [n for n, _ in watcher.get_service_names_and_types()
                         + watcher.get_topic_names_and_types()]
                seen |= {n for n in names if n.startswith(f'/{namespace}/')}
                rclpy.spin_once(watcher, timeout_sec=0.05)
            code = node.stop()
    finally:
        watcher.destroy_node()
    assert code == 1, node.output
    assert 'start-up failed: ' in node.output and message in node.output, node.output
    assert 'Traceback' not in node.output, node.output
    assert not seen, f'half-started: {sorted(seen)}'


def _serving(namespace, params, name):
    node = LoggedNode(params, namespace)
    client = Client(namespace, name=name)
    assert client.wait_for_node(60), node.output
    for topic in ('depth/image', 'normals/image', 'segmentation/labels'):
        client.listen(topic)
    client.exchange(frame(), ['depth/image', 'normals/image', 'segmentation/labels'])
    return node, client


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
@pytest.mark.parametrize('during', ['inference', 'label-change'])
def test_signal_mid_work_exits_0_cleanly_and_a_restart_serves(ros, tiny_params, sig, during):
    params = {**tiny_params, 'labels': LABELS, 'model.input_size': 224}
    namespace = 'hstop'
    node, client = _serving(namespace, params, f'hstop_{sig.name}_{during[0]}')
    try:
        start = time.monotonic()
        if during == 'label-change':  # 255 new labels x 9 templates: a second of encoding
            client.set_labels.call_async(SetLabels.Request(
                labels=[f'{during} {sig.name} {i}' for i in range(255)]))
            client.spin_until(lambda: False, 0.3)
            node.proc.send_signal(sig)
        seed = 0
        while node.alive() and time.monotonic() - start < 30:
            # Frames keep coming at ~50 Hz, so the worker is mid-inference when the signal
            # lands (the 224x224 input takes longer than 20 ms per frame).
            client.send(frame(seed=seed % 4))
            seed += 1
            rclpy.spin_once(client, timeout_sec=0.02)
            if seed == 25 and during == 'inference':
                node.proc.send_signal(sig)
        code = node.stop(sig)
    finally:
        client.destroy_node()
    assert code == 0, node.output
    for bad in ('Traceback', 'terminate called', 'Exception', 'Error'):
        assert bad not in node.output, node.output
    if sig == signal.SIGTERM:
        # The same namespace serves again (no stale state, no port or shared-memory clash).
        node, client = _serving(namespace, params, f'hstop2_{during[0]}')
        client.destroy_node()
        assert node.stop() == 0, node.output


class _Reporter:
    def __init__(self):
        self.errors = []

    def report(self, key, what, error):
        self.errors.append((key, error))


def test_an_exception_out_of_a_callback_is_reported_and_spinning_goes_on(ros):
    node = Node('hardening_net')
    calls = []

    def tick():
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise RuntimeError('a bug in a callback')

    node.create_timer(0.02, tick)
    reporter = _Reporter()
    stopped = spin_with_reporter(node, reporter, lambda: len(calls) >= 10)
    assert len(calls) >= 10 and stopped
    assert [(key, str(error)) for key, error in reporter.errors] == [
        ('callback', 'a bug in a callback')]
