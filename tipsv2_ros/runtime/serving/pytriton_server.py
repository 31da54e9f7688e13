# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""A Triton server without containers, for development and tests (nvidia-pytriton).

Two modes, both on the real Triton server binary that the ``nvidia-pytriton`` wheel ships:

- weights (default): PyTriton hosts the PyTorch image path under the name, tensors and
  ``tipsv2.*`` metadata of a repository from ``triton_repo.write_repository``; a request runs
  only the heads of the outputs it asks for.
- ``--repository DIR``: serves such a repository as written (ensemble, dynamic batching,
  metadata), its ONNX parts run by ONNX Runtime in Triton's Python backend, since the wheel
  has no ``onnxruntime`` backend. TensorRT plans need a GPU server (the Triton container).

nvidia-pytriton needs numpy<2, which the ROS wheels cannot use, so this runs from its own
virtual environment (``scripts/setup.sh --triton`` or ``--test`` creates ``.venv/pytriton``)
with the source tree on PYTHONPATH (``dev_server.DevServer`` does it for tests)::

    export PYTHONPATH=$PWD  # the repository root
    WEIGHTS="--vision-weights V.npz --depth-head D.zip --normals-head N.zip"
    .venv/pytriton/bin/python -m tipsv2_ros.runtime.serving.pytriton_server $WEIGHTS \
        --input-size 448

``--grpc-use-ssl`` (and ``--grpc-use-ssl-mutual``) with the certificate options of
``tritonserver`` serve gRPC over TLS (mutual TLS), in both modes, so that the TLS link of
backend triton is tested against the real server (``serving.certificates`` makes test ones).
"""
import argparse
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from typing import Optional, Sequence

MODEL_NAME = 'tipsv2_image_path'  # triton_contract.MODEL_NAME, without importing torch here
LOOPBACK = ('127.0.0.1', 'localhost', '::1')
# Seconds tritonserver waits for in-flight requests when stopped (its default, 30, holds a
# Ctrl-C that long while a robot's stream is open; a development server stops promptly).
EXIT_TIMEOUT_S = 5
# The Python-backend model that stands in for Triton's onnxruntime backend (--repository).
ONNX_MODEL_PY = '''\
import json
import os

import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:

    def initialize(self, args):
        config = json.loads(args['model_config'])
        path = os.path.join(args['model_repository'], args['model_version'], 'model.onnx')
        self.session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
        self.inputs = [t['name'] for t in config['input']]
        self.outputs = [t['name'] for t in config['output']]

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy()
                     for n in self.inputs}
            arrays = self.session.run(self.outputs, feeds)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor(n, a) for n, a in zip(self.outputs, arrays)]))
        return responses
'''


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m tipsv2_ros.runtime.serving.pytriton_server',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--repository', help='serve this model repository instead of weights')
    parser.add_argument('--vision-weights', help='image encoder file')
    parser.add_argument('--depth-head', help='depth DPT head (serves depth)')
    parser.add_argument('--normals-head', help='normals DPT head (serves normals)')
    parser.add_argument('--variant', help='checked against the weights when given')
    parser.add_argument('--no-segmentation', action='store_true',
                        help='do not serve the zero-shot features')
    parser.add_argument('--input-size', default='448', help='N or HxW, multiples of 14')
    parser.add_argument('--model-name', default=MODEL_NAME)
    parser.add_argument('--host', default='127.0.0.1', help='address to listen on')
    parser.add_argument('--port', type=int, default=8001, help='gRPC port')
    parser.add_argument('--http-port', type=int, default=8000, help='HTTP port')
    parser.add_argument('--max-batch', type=int, default=8)
    parser.add_argument('--queue-delay-us', type=int, default=1000,
                        help='how long the dynamic batcher waits to fill a batch')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=0,
                        help='PyTorch CPU threads (0: the default, one per core)')
    tls = parser.add_argument_group('TLS on gRPC (the options of tritonserver)')
    tls.add_argument('--grpc-use-ssl', action='store_true', help='serve gRPC over TLS')
    tls.add_argument('--grpc-use-ssl-mutual', action='store_true',
                     help='require client certificates signed by --grpc-root-cert')
    tls.add_argument('--grpc-server-cert', help="the server's certificate (PEM)")
    tls.add_argument('--grpc-server-key', help="the server's private key (PEM)")
    tls.add_argument('--grpc-root-cert', help='the CA that signs client certificates (PEM)')
    return parser


def _tls_options(args) -> dict:
    """Return the TLS options as ``TritonConfig`` fields (tritonserver's flags, '_' for '-')."""
    if not (args.grpc_use_ssl or args.grpc_use_ssl_mutual):
        return {}
    need = ['server_cert', 'server_key'] + ['root_cert'] * args.grpc_use_ssl_mutual
    if not all(getattr(args, f'grpc_{n}') for n in need):
        flags = ' '.join(f'--grpc-{n}'.replace('_', '-') for n in need)
        raise SystemExit(f'[triton_serve] TLS needs {flags}')
    names = ('use_ssl', 'use_ssl_mutual', 'server_cert', 'server_key', 'root_cert')
    return {f'grpc_{n}': getattr(args, f'grpc_{n}') or None for n in names}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _tls_options(args)  # refuse incomplete TLS options before anything starts
    # Triton's Python-backend stub links libpython; without this it loads the system's,
    # which need not match this interpreter (the stub inherits the server's environment).
    libdir = sysconfig.get_config_var('LIBDIR')
    os.environ['LD_LIBRARY_PATH'] = ':'.join(
        p for p in (libdir, os.environ.get('LD_LIBRARY_PATH')) if p)
    if args.repository:
        return serve_repository(args)
    if not args.vision_weights:
        parser.error('give --vision-weights (and heads), or --repository')
    import torch

    from tipsv2_ros.model.tips import TipsV2
    from tipsv2_ros.runtime.backends.torch_backend import TorchBackend
    from tipsv2_ros.runtime.backends.triton import contract as triton_contract
    from tipsv2_ros.tasks import DENSE_HEAD, REGISTRY
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = [int(p) for p in args.input_size.lower().split('x')]
    size = (parts * 2)[:2]
    heads = {spec.files[0]: getattr(args, spec.files[0]) for spec in REGISTRY.heads()
             if spec.exported and getattr(args, spec.files[0], None)}
    model = TipsV2.from_files(vision_weights=args.vision_weights, variant=args.variant,
                              **heads)
    model = model.to(args.device).eval()
    tasks = [spec.name for spec in REGISTRY if spec.exported and (
        heads.get(spec.files[0]) if spec.kind == DENSE_HEAD else not args.no_segmentation)]
    backend = TorchBackend(model, size, tasks)
    served = triton_contract.signature(model, size, tasks)
    serve(backend, served, triton_contract.metadata(model, size, tasks), args)
    return 0


def serve_repository(args) -> int:
    """Run the wheel's ``tritonserver`` on a copy of ``args.repository`` until a signal."""
    from pytriton.triton import TRITONSERVER_DIST_DIR
    from pytriton.utils.distribution import get_libs_path
    work = pathlib.Path(tempfile.mkdtemp(prefix='tipsv2_triton_'))
    try:
        server = work / 'tritonserver'
        shutil.copytree(TRITONSERVER_DIST_DIR, server,
                        ignore=shutil.ignore_patterns('python_backend_stubs'))
        version = f'{sys.version_info[0]}.{sys.version_info[1]}'
        shutil.copy(pathlib.Path(TRITONSERVER_DIST_DIR) / 'python_backend_stubs' / version
                    / 'triton_python_backend_stub', server / 'backends' / 'python')
        models = work / 'models'
        shutil.copytree(args.repository, models)
        for config in models.glob('*/config.pbtxt'):
            text = config.read_text()
            if 'platform: "tensorrt_plan"' in text:
                print(f'[triton_serve] {config.parent.name} is a TensorRT plan: serve it with '
                      'a GPU Triton server (container)', file=sys.stderr)
                return 2
            if 'platform: "onnxruntime_onnx"' in text:
                config.write_text(text.replace('platform: "onnxruntime_onnx"',
                                               'backend: "python"'))
                for onnx in config.parent.glob('*/model.onnx'):
                    (onnx.parent / 'model.py').write_text(ONNX_MODEL_PY)
        env = dict(os.environ)
        env['LD_LIBRARY_PATH'] += f':{get_libs_path()}'
        # The stub finds this venv's packages (onnxruntime, numpy) through its python.
        env['PATH'] = f'{pathlib.Path(sys.executable).parent}:{env.get("PATH", "")}'
        command = [str(server / 'bin' / 'tritonserver'), f'--model-repository={models}',
                   f'--backend-directory={server / "backends"}', '--allow-metrics=false',
                   f'--grpc-address={args.host}', f'--grpc-port={args.port}',
                   f'--http-address={args.host}', f'--http-port={args.http_port}',
                   f'--exit-timeout-secs={EXIT_TIMEOUT_S}']
        command += [f'--{k.replace("_", "-")}={str(v).lower() if v is True else v}'
                    for k, v in _tls_options(args).items() if v]
        proc = subprocess.Popen(command, env=env)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: proc.send_signal(signal.SIGINT))
        print(f'[triton_serve] serving the repository {args.repository} on '
              f'{args.host}:{args.port} (gRPC), :{args.http_port} (HTTP)', flush=True)
        return proc.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def serve(backend, served, info, args) -> None:
    """Serve ``backend`` until SIGINT or SIGTERM."""
    import numpy as np
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton import triton as pytriton_triton
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
    import torch

    from tipsv2_ros.runtime.backends.triton import contract as triton_contract
    from tipsv2_ros.tasks import REGISTRY
    task_of = {spec.output: spec.name for spec in REGISTRY}

    def infer(requests):
        # The dynamic batcher may join requests of several robots asking different outputs:
        # run each group of equal asks once, with only the heads it needs.
        groups = {}
        for index, request in enumerate(requests):
            asked = request.requested_output_names or list(served.outputs)
            names = tuple(n for n in served.outputs if n in asked)
            groups.setdefault(names, []).append(index)
        responses = [None] * len(requests)
        for names, members in groups.items():
            arrays = [requests[i][triton_contract.INPUT] for i in members]
            pixels = torch.from_numpy(np.concatenate(arrays)).to(backend.device)
            outputs = backend.infer(pixels, frozenset(task_of[n] for n in names))
            start = 0
            for index, array in zip(members, arrays):
                stop = start + len(array)
                responses[index] = {n: outputs[n][start:stop].cpu().numpy()
                                    for n in names}
                start = stop
        return responses

    # PyTriton puts the shared-memory and statistics APIs behind a token; clients on this
    # host may use them when the server listens on loopback only (model loading stays closed).
    restricted = list(pytriton_triton.DEFAULT_PROTECTED_ENDPOINTS)
    if args.host in LOOPBACK:
        restricted = [e for e in restricted if e not in ('shared-memory', 'statistics')]
    triton = Triton(config=TritonConfig(
        grpc_address=args.host, grpc_port=args.port, http_address=args.host,
        http_port=args.http_port, allow_metrics=False, exit_timeout_secs=EXIT_TIMEOUT_S,
        **_tls_options(args)),
        security_config=TritonSecurityConfig(restricted_endpoints=restricted))
    triton.bind(model_name=args.model_name, infer_func=infer,
                inputs=[Tensor(name=triton_contract.INPUT, dtype=np.float32,
                               shape=served.pixel_values)],
                outputs=[Tensor(name=n, dtype=np.float32, shape=d)
                         for n, d in served.outputs.items()],
                config=ModelConfig(max_batch_size=args.max_batch, batcher=DynamicBatcher(
                    max_queue_delay_microseconds=args.queue_delay_us)), strict=True)
    _publish_metadata(triton, args.model_name, info)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f'[triton_serve] serving {args.model_name!r} ({", ".join(served.outputs)}) on '
          f'{args.host}:{args.port} (gRPC), :{args.http_port} (HTTP)', flush=True)
    triton.serve()  # returns on SIGINT/SIGTERM after stopping the server


def _publish_metadata(triton, name: str, info) -> None:
    # PyTriton has no public way to add config parameters; they go where it keeps its own
    # ('workspace-path') before the model is loaded. Clients warn when they are missing.
    try:
        for model in triton._model_manager.models:
            if model.model_name == name:
                model._get_triton_model_config().backend_parameters.update(info)
    except AttributeError as error:
        print(f'[triton_serve] WARNING: tipsv2.* metadata not published ({error})',
              file=sys.stderr)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == '__main__':
    sys.exit(main())
