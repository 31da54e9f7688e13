# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Backend triton against a real Triton server (PyTriton, .venv/pytriton) on loopback."""
import itertools
import pathlib
import time

from google.protobuf import text_format
import numpy as np
import pytest
import torch

from tipsv2_ros.runtime.backends.base import BackendError
from tipsv2_ros.runtime.backends.torch_backend import TorchBackend
from tipsv2_ros.runtime.backends.triton import contract as triton_contract
from tipsv2_ros.runtime.backends.triton.contract import ServedMismatch as TritonMismatch
from tipsv2_ros.runtime.export import parity
from tipsv2_ros.runtime.serving import dev_server as triton_dev, repository as triton_repo

pytest.importorskip('tritonclient.grpc', reason='backend triton needs tritonclient[grpc]')
from triton_helpers import needs_server  # noqa: E402, I100

TASKS = ('depth', 'normals', 'segmentation')
SIZE = (112, 112)
MAX_BATCH = 4  # small, so that a batch of 6 is split into two requests
LABELS = ['floor', 'wall', 'person']


@pytest.fixture(scope='module')
def model(tiny_weights):
    from tipsv2_ros.model.tips import TipsV2
    w = tiny_weights
    return TipsV2.from_files(w.vision, w.text, w.tokenizer, depth_head=w.depth_head,
                             normals_head=w.normals_head)


@pytest.fixture(scope='module')
def server(tiny_weights, tmp_path_factory):
    w = tiny_weights
    args = ['--vision-weights', str(w.vision), '--depth-head', str(w.depth_head),
            '--normals-head', str(w.normals_head), '--input-size', 'x'.join(map(str, SIZE)),
            '--max-batch', str(MAX_BATCH)]
    log = tmp_path_factory.mktemp('triton') / 'server.log'
    with triton_dev.DevServer(args, log) as running:
        yield running


def _backend(server, model, tasks=TASKS, size=SIZE, log=None, **kwargs):
    from tipsv2_ros.runtime.backends.triton.backend import TritonBackend
    options = {'served': triton_contract.signature(model, size, tasks),
               'expected': triton_contract.metadata(model, size, tasks),
               'log': log if log is not None else (lambda text: None), **kwargs}
    return TritonBackend(server.url, triton_contract.MODEL_NAME, size, tasks, **options)


@needs_server
@pytest.mark.parametrize('shared_memory', ['off', 'on'])
def test_outputs_match_torch_for_every_task_subset(server, model, shared_memory):
    reference = TorchBackend(model, SIZE, TASKS)
    pixels = torch.rand(6, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    with _backend(server, model, shared_memory=shared_memory) as backend:
        assert backend.max_batch == MAX_BATCH and backend.connected
        assert ('shared memory' in backend.describe()) == (shared_memory == 'on')
        for count in (1, 2, 3):
            for tasks in map(frozenset, itertools.combinations(TASKS, count)):
                ours, expected = backend.infer(pixels, tasks), reference.infer(pixels, tasks)
                for field in ('depth', 'normals', 'features'):
                    a, b = getattr(ours, field), getattr(expected, field)
                    assert (a is None) == (b is None), (tasks, field)
                    if a is not None:  # a batch of 6 is 4 + 2 on the server: other blocking
                        assert parity.max_relative_error(a, b) < 1e-4, (tasks, field)


@needs_server
def test_configuration_mismatches_fail_at_start(server, model):
    with pytest.raises(TritonMismatch, match=r'pixel_values .*\(3, 112, 112\).*\(3, 98, 98\)'
                       r'.*model.input_size'):
        _backend(server, model, size=(98, 98))
    other = {**triton_contract.metadata(model, SIZE, TASKS), 'tipsv2.vision': '0123'}
    with pytest.raises(TritonMismatch, match='tipsv2.vision.*same image encoder weights'):
        _backend(server, model, expected=other)
    logs = []  # without segmentation other encoder weights only warrant a warning
    with _backend(server, model, tasks=('depth',), expected=other, log=logs.append) as backend:
        assert backend.infer(torch.rand(1, 3, *SIZE), {'depth'}).depth.shape == (1, 1, 64, 64)
    assert any(line.startswith('WARNING') and 'tipsv2.vision' in line for line in logs)


def test_served_configuration_checks(model):
    served = triton_contract.signature(model, SIZE, TASKS)
    tensor = {'data_type': 'TYPE_FP32'}
    config = {'max_batch_size': 2, 'input': [{**tensor, 'name': 'pixel_values',
                                              'dims': ['3', '112', '112']}],
              'output': [{**tensor, 'name': n, 'dims': [str(d) for d in dims]}
                         for n, dims in served.outputs.items() if n != 'features']}
    with pytest.raises(TritonMismatch, match="no tensor 'features' \\(for segmentation\\)"):
        triton_contract.check_served(config, served, {}, TASKS, SIZE, 'm')
    depth_only = triton_contract.signature(model, SIZE, ['depth'])
    assert triton_contract.check_served(config, depth_only, {}, ['depth'], SIZE, 'm') == (
        2, [('metadata', 'm publishes no tipsv2.* metadata: whether it runs the same weights '
             'is not checked')])
    with pytest.raises(TritonMismatch, match='does not batch'):
        triton_contract.check_served({**config, 'max_batch_size': 0}, depth_only, {},
                                     ['depth'], SIZE, 'm')


@needs_server
def test_missing_model_or_server_degrades_and_retries(server, model):
    from tipsv2_ros.runtime.backends.triton.backend import TritonBackend, TritonUnavailable
    logs = []
    backend = TritonBackend(server.url, 'no_such_model', SIZE, TASKS,
                            triton_contract.signature(model, SIZE, TASKS), log=logs.append,
                            backoff=(0.3, 1.0))
    assert "no ready model 'no_such_model'" in logs[0] and 'starts anyway' in logs[0]
    assert 'not connected' in backend.describe() and not backend.connected
    with pytest.raises(TritonUnavailable, match='next attempt in'):
        backend.infer(torch.rand(1, 3, *SIZE), {'depth'})  # within the backoff: no request
    time.sleep(0.35)
    with pytest.raises(TritonUnavailable, match="no ready model 'no_such_model'"):
        backend.infer(torch.rand(1, 3, *SIZE), {'depth'})
    gone = TritonBackend(f'127.0.0.1:{triton_dev.free_port()}', triton_contract.MODEL_NAME, SIZE,
                         TASKS, triton_contract.signature(model, SIZE, TASKS), log=logs.append)
    assert 'is unreachable' in logs[-1]
    start = time.monotonic()
    with pytest.raises(BackendError, match='unreachable'):
        gone.infer(torch.rand(1, 3, *SIZE), {'depth'})
    assert time.monotonic() - start < 1.0  # frames fail at once; the node does not stall


@pytest.fixture(scope='module')
def repository(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp('repository')
    return triton_repo.write_repository(model, folder / 'repo', SIZE, ('depth', 'segmentation'),
                                        max_batch=8, instances=2, cache_dir=folder / 'cache',
                                        log=lambda text: None)


def test_repository_configs(model, repository):
    from tritonclient.grpc import model_config_pb2
    name = triton_contract.MODEL_NAME
    assert sorted(repository.models) == [name, f'{name}_depth', f'{name}_encoder']
    configs = {m: text_format.Parse((folder / 'config.pbtxt').read_text(),
                                    model_config_pb2.ModelConfig())
               for m, folder in repository.models.items()}
    ensemble, encoder = configs[name], configs[f'{name}_encoder']
    assert ensemble.platform == 'ensemble' and ensemble.max_batch_size == 8
    assert [(t.name, list(t.dims)) for t in ensemble.input] == [('pixel_values', [3, 112, 112])]
    assert [(t.name, list(t.dims)) for t in ensemble.output] == [
        ('depth', [1, 64, 64]), ('features', [8, 8, 64])]
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == [f'{name}_encoder', f'{name}_depth']
    assert dict(steps[1].input_map) == {t.name: t.name for t in configs[f'{name}_depth'].input}
    assert {k: v.string_value for k, v in ensemble.parameters.items()} == repository.metadata
    assert repository.metadata['tipsv2.vision'] == triton_contract.vision_id(model)
    for part in ('encoder', 'depth'):
        config = configs[f'{name}_{part}']
        assert config.platform == 'onnxruntime_onnx' and config.max_batch_size == 8
        assert config.dynamic_batching.max_queue_delay_microseconds == 1000
        assert [(g.count, g.kind) for g in config.instance_group] == [
            (2, model_config_pb2.ModelInstanceGroup.KIND_AUTO)]
        assert (repository.models[f'{name}_{part}'] / '1' / 'model.onnx').is_file()
    # The dims written are those of the ONNX graphs (Triton refuses a model otherwise).
    import onnxruntime
    session = onnxruntime.InferenceSession(
        str(repository.models[f'{name}_encoder'] / '1' / 'model.onnx'))
    outputs = session.run(None, {'pixel_values': np.zeros((2, 3, *SIZE), np.float32)})
    assert [(o.name, list(a.shape[1:])) for o, a in zip(session.get_outputs(), outputs)] == [
        (t.name, list(t.dims)) for t in encoder.output]


def test_repository_with_tensorrt_plans(model, repository, tmp_path):
    """Plans go where ONNX files went; a stand-in toolchain replaces TensorRT and the GPU."""
    from tipsv2_ros.runtime.backends.tensorrt.backend import Toolchain

    def load(blob, device):
        return lambda feeds: {}
    toolchain = Toolchain('10.99-fake', 'Fake GPU (sm_00)', True,
                          lambda onnx, *args: b'plan:' + pathlib.Path(onnx).name.encode(), load)
    reports = {'gate': lambda backend: parity.ParityReport(depth=0.001, segmentation=1.0)}
    repo = triton_repo.write_repository(
        model, tmp_path / 'repo', SIZE, ('depth', 'segmentation'), engine='tensorrt',
        cache_dir=repository.path.parent / 'cache', log=lambda text: None,
        tensorrt_options={'toolchain': toolchain, **reports})
    assert repo.engine == 'tensorrt (fp16)'
    name = triton_contract.MODEL_NAME
    for part in ('encoder', 'depth'):
        folder = repo.models[f'{name}_{part}']
        text = (folder / 'config.pbtxt').read_text()
        assert 'platform: "tensorrt_plan"' in text and 'kind: KIND_GPU' in text
        assert (folder / '1' / 'model.plan').read_bytes().startswith(b'plan:')
        assert not (folder / '1' / 'model.onnx').exists()
    # The repository says which Triton container can load its plans (the builder's TensorRT).
    note = (repo.path / 'SERVE_WITH.txt').read_text()
    assert 'built with TensorRT 10.99-fake on Fake GPU (sm_00)' in note
    assert 'tritonserver:<yy.mm>-py3 release whose release notes list TensorRT 10.99-fake' in note
    with pytest.raises(BackendError, match='CUDA device'):
        triton_repo.write_repository(model, tmp_path / 'other', SIZE, ('depth',),
                                     engine='tensorrt', cache_dir=tmp_path / 'cache')


@needs_server
def test_repository_serves_on_triton_with_lazy_heads(model, repository, tmp_path):
    import tritonclient.grpc as grpcclient
    tasks = ('depth', 'segmentation')
    reference = TorchBackend(model, SIZE, tasks)
    pixels = torch.rand(3, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    with triton_dev.DevServer(['--repository', str(repository.path)],
                              tmp_path / 'server.log') as server:
        stats = grpcclient.InferenceServerClient(server.url)

        def runs(part):
            found = stats.get_inference_statistics(f'{triton_contract.MODEL_NAME}_{part}')
            return found.model_stats[0].execution_count
        with _backend(server, model, tasks=tasks) as backend:
            assert 'shared memory' in backend.describe()  # the server is on this host
            for asked in ({'segmentation'}, {'depth'}, {'depth', 'segmentation'}):
                before = runs('depth')
                ours, expected = backend.infer(pixels, asked), reference.infer(pixels, asked)
                assert (runs('depth') > before) == ('depth' in asked)  # pruned when not asked
                for field in ('depth', 'features'):
                    a, b = getattr(ours, field), getattr(expected, field)
                    assert (a is None) == (b is None)
                    if a is not None:  # ONNX Runtime vs PyTorch: the export gate's tolerance
                        assert parity.max_relative_error(a, b) < parity.EXPORT_RTOL


# --- the node (`tipsv2 node`, its own process) over real DDS ------------------------------
def _frame(seed, height=60, width=80):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


OUTPUTS = ['depth/image', 'normals/image', 'segmentation/labels']


@pytest.fixture(scope='module')
def robots(ros, tiny_params, server):
    """Start a torch node (the reference) and two triton nodes (robots) sharing ``server``."""
    from ros_helpers import Client, NodeProcess
    triton = {**tiny_params, 'labels': LABELS, 'backend': 'triton', 'triton.url': server.url}
    nodes = {'ref': NodeProcess({**tiny_params, 'labels': LABELS}, 'tt_ref'),
             'robot1': NodeProcess(triton, 'tt_robot1'),
             'robot2': NodeProcess(triton, 'tt_robot2')}
    clients = {}
    try:
        for name, node in nodes.items():
            clients[name] = Client(f'tt_{name}', name=f'tt_client_{name}')
            assert clients[name].wait_for_node(90), node.stop() or node.output
            for topic in OUTPUTS:
                clients[name].listen(topic)
        yield nodes, clients
    finally:
        for client in clients.values():
            client.destroy_node()
        for node in nodes.values():
            node.stop()


def _arrays(got):
    from tipsv2_ros.ros import conversions
    return {topic: conversions.image_to_array(msg) for topic, msg in got.items()}


@needs_server
def test_two_robots_share_the_server_and_match_the_torch_node(robots):
    nodes, clients = robots
    for seed, robot in ((1, 'robot1'), (2, 'robot2')):
        sent, got = clients[robot].exchange(_frame(seed), OUTPUTS, frame_id=f'{robot}_cam',
                                            timeout=60)
        assert all(m.header.stamp == sent.header.stamp for m in got.values())
        assert all(m.header.frame_id == f'{robot}_cam' for m in got.values())
        _, expected = clients['ref'].exchange(_frame(seed), OUTPUTS, timeout=60)
        ours, reference = _arrays(got), _arrays(expected)
        # The server's dynamic batcher may join the robots' frames: float noise, no more.
        np.testing.assert_allclose(ours['depth/image'], reference['depth/image'], rtol=1e-4)
        np.testing.assert_allclose(ours['normals/image'], reference['normals/image'],
                                   atol=1e-4)
        same = ours['segmentation/labels'] == reference['segmentation/labels']
        assert same.mean() > 0.999


@needs_server
def test_server_down_mid_stream_then_back(robots, server, ros, tiny_params):
    from ros_helpers import Client, NodeProcess
    nodes, clients = robots
    client = clients['robot1']
    client.exchange(_frame(3), OUTPUTS, timeout=60)
    server.stop()
    client.clear()
    for _ in range(10):  # frames while the server is down: no output, no crash
        client.send(_frame(4))
        client.spin_until(lambda: False, 0.2)
    assert not any(client.received.values())
    assert nodes['robot1'].proc.poll() is None
    # A robot that boots while the server is down starts anyway, and says so.
    late = NodeProcess({**tiny_params, 'labels': LABELS, 'backend': 'triton',
                        'triton.url': server.url}, 'tt_late')
    late_client = Client('tt_late', name='tt_client_late')
    try:
        assert late_client.wait_for_node(90), late.stop() or late.output
        for topic in OUTPUTS:
            late_client.listen(topic)
        server.start()
        for robot_client in (client, late_client):
            sent, got = robot_client.exchange(_frame(5), OUTPUTS, timeout=60)
            assert all(m.header.stamp == sent.header.stamp for m in got.values())
    finally:
        late_client.destroy_node()
        late.stop()
    assert 'is unreachable' in late.output and 'starts anyway' in late.output
    assert 'connected to Triton' in late.output
    nodes['robot1'].stop()
    log = nodes['robot1'].output
    assert 'lost the Triton server' in log and 'frame failed' in log, log[-3000:]
    assert 'connected to Triton' in log, log[-3000:]
