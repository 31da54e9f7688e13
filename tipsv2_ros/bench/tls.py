# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""What TLS costs on the Triton link: mutual TLS against plain gRPC, side by side.

Two development Triton servers (PyTriton, ``triton_dev``) serve the bench's model on
loopback, one plain and one with mutual TLS (throwaway certificates); a backend for each
sends the same frame in turn, round after round, with shared memory off so that every tensor
crosses the (encrypted) socket as it would over a network. The ratio and the per-round
difference are the price of encryption for this model's tensors; the compute is the same
on both sides.
"""
import pathlib
import statistics
import tempfile
from typing import List

import numpy as np
import torch

from tipsv2_ros.bench.table import Row, SECTIONS
from tipsv2_ros.bench.timing import interleave, paired_ratio
from tipsv2_ros.runtime import factory, triton_contract, triton_dev
from tipsv2_ros.runtime.base import BackendError

NAME = 'TLS: triton gRPC over mutual TLS / plain gRPC (same server model, loopback)'


def rows(cfg, model, input_size, tasks, device, log) -> List[Row]:
    """Measure the mutual-TLS and the plain link; one row each and the ratio row."""
    if not triton_dev.pytriton_python().exists():
        return [Row.skipped(SECTIONS[2], NAME, 'no development Triton server (scripts/setup.sh '
                            '--triton creates .venv/pytriton)')]
    try:
        from tipsv2_ros.runtime.tls_certificates import write_certificates
        from tipsv2_ros.runtime.triton_backend import TritonBackend
        from tipsv2_ros.runtime.triton_tls import TlsSettings
    except ImportError as error:
        return [Row.skipped(SECTIONS[2], NAME, f'{error} (pip install cryptography '
                            '"tritonclient[grpc]")')]
    files = factory.model_files(cfg.values)
    tasks = sorted(t for t in tasks if t != 'normals' or files.get('model.normals_head'))
    with tempfile.TemporaryDirectory(prefix='tipsv2_bench_tls_') as work:
        work = pathlib.Path(work)
        certs = write_certificates(work / 'certs', hosts=('127.0.0.1',))
        args = ['--vision-weights', files['model.vision_weights'], '--input-size',
                'x'.join(map(str, input_size)), '--device',
                'cuda' if device.type == 'cuda' else 'cpu', '--max-batch', '1']
        for task in ('depth', 'normals'):
            if task in tasks:
                args += [f'--{task}-head', files[f'model.{task}_head']]
        if 'segmentation' not in tasks:
            args.append('--no-segmentation')
        if cfg.threads:
            args += ['--threads', str(cfg.threads)]
        secure = ['--grpc-use-ssl', '--grpc-use-ssl-mutual', '--grpc-server-cert',
                  str(certs.server), '--grpc-server-key', str(certs.server_key),
                  '--grpc-root-cert', str(certs.ca)]
        servers = {'plain': triton_dev.DevServer(args, work / 'plain.log'),
                   'tls': triton_dev.DevServer(args + secure, work / 'tls.log')}
        settings = {'plain': TlsSettings(), 'tls': TlsSettings(
            True, str(certs.ca), str(certs.client), str(certs.client_key))}
        backends = {}
        try:
            for name, server in servers.items():
                log(f'TLS row: starting the {name} development Triton server ...')
                server.start(cfg.start_timeout)
                backends[name] = TritonBackend(
                    server.url, triton_contract.MODEL_NAME, input_size, tasks,
                    triton_contract.signature(model, input_size, tasks),
                    triton_contract.metadata(model, input_size, tasks), device=device,
                    timeout=600.0, shared_memory='off', tls=settings[name], log=log)
                if not backends[name].connected:
                    raise RuntimeError(f'the {name} server did not answer')
            pixels = torch.rand(1, 3, *input_size, device=device)
            asked = frozenset(tasks)
            log('TLS row: plain and mutual-TLS requests in turn ...')
            samples = interleave({n: (lambda b=b: b.infer(pixels, asked))
                                  for n, b in backends.items()}, cfg.iterations, cfg.warmup)
        except (RuntimeError, OSError, BackendError) as error:
            return [Row.skipped(SECTIONS[2], NAME, f'{error}'.splitlines()[0][:200])]
        finally:
            for backend in backends.values():
                backend.close()
            for server in servers.values():
                server.stop()
    served = triton_contract.signature(model, input_size, tasks)
    megabytes = 4 * (np.prod(served.pixel_values) + sum(
        int(np.prod(d)) for d in served.outputs.values())) / 1e6
    extra = statistics.median(np.subtract(samples['tls'], samples['plain'])) * 1e3
    ratio = paired_ratio(samples['tls'], samples['plain'])
    return [Row.timing(SECTIONS[2], 'triton, plain gRPC (shared memory off)', samples['plain']),
            Row.timing(SECTIONS[2], 'triton, gRPC over mutual TLS (shared memory off)',
                       samples['tls']),
            Row(SECTIONS[2], NAME, samples['tls'].p50, samples['tls'].p90, f'{ratio:.3f}',
                note=f'{extra:+.1f} ms per frame (median of per-round differences) for '
                f'{megabytes:.1f} MB of tensors per frame ({"+".join(tasks)}); the price '
                'of encrypting the link, informational (no target)')]
