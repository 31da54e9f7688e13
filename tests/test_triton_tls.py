# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Backend triton over TLS and mutual TLS, against a real Triton server (PyTriton) on loopback.

Certificates are made here (a throwaway CA, server and client certificates, and a second CA
nobody trusts); the server only lists 127.0.0.1, so 'localhost' is a wrong host name.
"""
import shutil
import time

import pytest
import torch

from tipsv2_ros.runtime.backends.base import BackendError
from tipsv2_ros.runtime.backends.triton import contract as triton_contract
from tipsv2_ros.runtime.backends.triton.tls import TlsSettings
from tipsv2_ros.runtime.export import parity
from tipsv2_ros.runtime.serving import dev_server as triton_dev

pytest.importorskip('tritonclient.grpc', reason='backend triton needs tritonclient[grpc]')
pytest.importorskip('cryptography', reason='the test certificates need cryptography')
from tipsv2_ros.runtime.backends.torch_backend import TorchBackend  # noqa: E402, I100

from triton_helpers import needs_server  # noqa: E402, I100
TASKS = ('depth', 'normals', 'segmentation')
SIZE = (112, 112)


@pytest.fixture(scope='module')
def model(tiny_weights):
    from tipsv2_ros.model.tips import TipsV2
    w = tiny_weights
    return TipsV2.from_files(w.vision, w.text, w.tokenizer, depth_head=w.depth_head,
                             normals_head=w.normals_head)


def _server(tiny_weights, certs, log, mutual):
    w, fleet = tiny_weights, certs[0]
    args = ['--vision-weights', str(w.vision), '--depth-head', str(w.depth_head),
            '--normals-head', str(w.normals_head), '--input-size', 'x'.join(map(str, SIZE)),
            '--grpc-use-ssl', '--grpc-server-cert', str(fleet.server),
            '--grpc-server-key', str(fleet.server_key)]
    if mutual:
        args += ['--grpc-use-ssl-mutual', '--grpc-root-cert', str(fleet.ca)]
    return triton_dev.DevServer(args, log)


@pytest.fixture(scope='module')
def tls_server(tiny_weights, certs, tmp_path_factory):
    log = tmp_path_factory.mktemp('triton_tls') / 'server.log'
    with _server(tiny_weights, certs, log, mutual=False) as running:
        yield running


@pytest.fixture(scope='module')
def mtls_server(tiny_weights, certs, tmp_path_factory):
    log = tmp_path_factory.mktemp('triton_mtls') / 'server.log'
    with _server(tiny_weights, certs, log, mutual=True) as running:
        yield running


def _backend(url, model, tls, log=None, **kwargs):
    from tipsv2_ros.runtime.backends.triton.backend import TritonBackend
    return TritonBackend(url, triton_contract.MODEL_NAME, SIZE, TASKS,
                         triton_contract.signature(model, SIZE, TASKS),
                         triton_contract.metadata(model, SIZE, TASKS),
                         log=log if log is not None else (lambda text: None), tls=tls,
                         **kwargs)


def _settings(cert_set, ca=None, client=True):
    return TlsSettings(True, str(ca or cert_set.ca), str(cert_set.client) if client else '',
                       str(cert_set.client_key) if client else '')


@needs_server
@pytest.mark.parametrize('mutual', [False, True], ids=['tls', 'mutual-tls'])
def test_outputs_over_tls_match_torch(request, model, certs, mutual):
    server = request.getfixturevalue('mtls_server' if mutual else 'tls_server')
    fleet = certs[0]
    reference = TorchBackend(model, SIZE, TASKS)
    pixels = torch.rand(3, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    for shared_memory in ('off', 'auto'):
        with _backend(server.url, model, _settings(fleet, client=mutual),
                      shared_memory=shared_memory) as backend:
            assert backend.connected
            assert f'over {"mutual TLS" if mutual else "TLS"}' in backend.describe()
            ours, expected = backend.infer(pixels, TASKS), reference.infer(pixels, TASKS)
            for field in ('depth', 'normals', 'features'):
                assert parity.max_relative_error(getattr(ours, field),
                                                 getattr(expected, field)) < 1e-4


REFUSALS = {
    'another CA': (lambda fleet, stranger, url: (url, _settings(fleet, ca=stranger.ca)),
                   'certificate is not signed by triton.root_cert'),
    'wrong host name': (lambda fleet, stranger, url: (url.replace('127.0.0.1', 'localhost'),
                                                      _settings(fleet)),
                        "certificate does not name 'localhost', the host of triton.url"),
    'no client certificate': (lambda fleet, stranger, url: (url, _settings(fleet,
                                                                           client=False)),
                              'requires a client certificate (mutual TLS)'),
    'client certificate of another CA': (
        lambda fleet, stranger, url: (url, TlsSettings(True, str(fleet.ca), str(
            stranger.client), str(stranger.client_key))),
        'refused the client certificate'),
    'plain gRPC': (lambda fleet, stranger, url: (url, TlsSettings()),
                   'it probably expects TLS (set triton.ssl: true'),
}


@needs_server
@pytest.mark.parametrize('case', list(REFUSALS))
def test_refused_links_say_why_and_keep_retrying(mtls_server, model, certs, case):
    from tipsv2_ros.runtime.backends.triton.backend import TritonUnavailable
    make, reason = REFUSALS[case]
    url, tls = make(*certs, mtls_server.url)
    logs = []
    backend = _backend(url, model, tls, log=logs.append, backoff=(0.2, 0.4))
    assert len(logs) == 1 and logs[0].startswith('WARNING: ') and reason in logs[0], logs
    assert 'starts anyway' in logs[0] and not backend.connected
    time.sleep(0.25)
    start = time.monotonic()
    with pytest.raises(TritonUnavailable, match='refused: .*' + reason.split('(')[0][:30]):
        backend.infer(torch.rand(1, 3, *SIZE), {'depth'})  # retried, refused again
    assert time.monotonic() - start < 3.0 and not backend.connected
    backend.close()


@needs_server
def test_certificates_fixed_on_disk_are_picked_up_without_a_restart(
        mtls_server, model, certs, tmp_path):
    from tipsv2_ros.runtime.backends.triton.backend import TritonUnavailable
    fleet, stranger = certs
    root = tmp_path / 'ca.pem'
    shutil.copy(stranger.ca, root)
    backend = _backend(mtls_server.url, model, _settings(fleet, ca=root), backoff=(0.2, 0.4))
    assert not backend.connected
    shutil.copy(fleet.ca, root)  # the operator installs the right CA
    deadline = time.monotonic() + 10
    while True:
        try:
            out = backend.infer(torch.rand(1, 3, *SIZE), {'depth'})
            break
        except TritonUnavailable:
            assert time.monotonic() < deadline, 'did not reconnect with the fixed CA'
            time.sleep(0.2)
    assert out.depth.shape == (1, 1, 64, 64) and backend.connected
    backend.close()


@needs_server
def test_tls_server_restart_is_survived(tls_server, model, certs):
    """Last user of tls_server: it is stopped and started again (same port)."""
    from tipsv2_ros.runtime.backends.triton.backend import TritonUnavailable
    with _backend(tls_server.url, model, _settings(certs[0], client=False),
                  backoff=(0.2, 0.4), shared_memory='off') as backend:
        backend.infer(torch.rand(1, 3, *SIZE), {'depth'})
        tls_server.stop()
        with pytest.raises(TritonUnavailable, match='lost the Triton server'):
            backend.infer(torch.rand(1, 3, *SIZE), {'depth'})
        tls_server.start()
        deadline = time.monotonic() + 10
        while not backend.connected:
            try:
                backend.infer(torch.rand(1, 3, *SIZE), {'depth'})
            except TritonUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert 'over TLS' in backend.describe()


@pytest.mark.parametrize('settings, url, message', [
    (TlsSettings(False, '/x/ca.pem'), 'h:8001', 'triton.root_cert set but triton.ssl is false'),
    (TlsSettings(True, '', '/x/c.pem', ''), 'h:8001', 'needs both triton.client_cert and'),
    (TlsSettings(True, '/no/such/ca.pem'), 'h:8001', 'triton.root_cert: no such file'),
    (TlsSettings(True), 'http://h:8000', 'triton.ssl is for gRPC'),
], ids=['certs-without-ssl', 'cert-without-key', 'missing-file', 'http'])
def test_incoherent_tls_settings_fail_at_start(settings, url, message):
    with pytest.raises(BackendError, match=message):
        settings.check(url)


def test_backend_triton_reads_the_tls_parameters(model, certs):
    from tipsv2_ros.ros.params import runtime_config
    from tipsv2_ros.runtime import backends
    fleet = certs[0]
    options = {'triton.url': f'127.0.0.1:{triton_dev.free_port()}', 'triton.ssl': True,
               'triton.root_cert': str(fleet.ca), 'triton.client_cert': str(fleet.client),
               'triton.client_key': str(fleet.client_key)}
    logs = []
    with backends.create('triton', model, SIZE, TASKS, 'cpu', 'auto', None, logs.append,
                         runtime_config(options)) as backend:
        assert backend.tls == _settings(fleet) and backend.tls.mutual
        assert 'gRPC over mutual TLS' in backend.describe()
    with pytest.raises(BackendError, match='triton.ssl is false'):
        backends.create('triton', model, SIZE, TASKS, 'cpu', 'auto', None, logs.append,
                        runtime_config({**options, 'triton.ssl': False}))


# gRPC's words for each refusal (tritonclient 2.73, grpcio 1.7x), as seen against PyTriton.
_LAST = 'UNAVAILABLE: failed to connect to all addresses; last error: '
_VERIFY = (_LAST + 'UNKNOWN: ipv4:127.0.0.1:1: Tls handshake failed (TSI_PROTOCOL_FAILURE): '
           'SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:'
           'CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK')


@pytest.mark.parametrize('text, settings, expected', [
    (_VERIFY, TlsSettings(True, '/etc/ca.pem'), 'not signed by triton.root_cert (/etc/ca.pem)'),
    (_VERIFY, TlsSettings(True), "not signed by the system's certificate authorities"),
    (_LAST + 'UNKNOWN: ipv4:127.0.0.1:1: Custom verification check failed with error: '
     'UNAUTHENTICATED: Hostname Verification Check failed.', TlsSettings(True),
     "does not name 'gpu', the host of triton.url"),
    (_LAST + 'UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed', TlsSettings(True),
     'requires a client certificate (mutual TLS)'),
    (_LAST + 'UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed',
     TlsSettings(True, '', '/r.pem', '/r.key'), "refused the client certificate '/r.pem'"),
    (_LAST + 'UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed', TlsSettings(),
     'it probably expects TLS'),
    (_LAST + 'UNKNOWN: ipv4:127.0.0.1:1: Tls handshake failed (TSI_PROTOCOL_FAILURE): '
     'SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER',
     TlsSettings(True), 'the server does not speak TLS'),
    (_LAST + 'UNAVAILABLE: ipv4:127.0.0.1:1: Failed to connect to remote host: Connection '
     'refused', TlsSettings(True), None),  # a server that is down is not a TLS problem
    (_LAST + 'UNAVAILABLE: ipv4:127.0.0.1:1: Failed to connect to remote host: Connection '
     'refused', TlsSettings(), None),
])
def test_refusals_are_read_from_grpc_errors(text, settings, expected):
    from tipsv2_ros.runtime.backends.triton.tls import explain
    reason = explain(text, settings, 'gpu')
    assert reason == expected if expected is None else expected in reason


@needs_server
def test_a_robot_certificate_cannot_control_the_server(mtls_server, certs):
    """Model control is behind the operator's header: a robot's certificate only infers."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException
    fleet = certs[0]
    robot = grpcclient.InferenceServerClient(
        mtls_server.url, ssl=True, root_certificates=str(fleet.ca),
        private_key=str(fleet.client_key), certificate_chain=str(fleet.client))
    try:
        with pytest.raises(InferenceServerException, match='restricted'):
            robot.unload_model(triton_contract.MODEL_NAME)
        assert robot.is_model_ready(triton_contract.MODEL_NAME)
    finally:
        robot.close()
