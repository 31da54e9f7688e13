# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The Triton backend: the image path runs on a Triton Inference Server, shared by a fleet.

What crosses the wire is the contract of every backend: the preprocessed ``pixel_values``
(B, 3, H, W) float32, resized on the robot. Sending raw frames would be smaller (uint8, no
resize) but would need the resize on the server, with per-camera sizes in one batch and
outputs that no longer match the local backends bit for bit; the node's resize is cheap.
Only the outputs of the asked tasks are requested: the ensemble of ``triton_repo.py`` runs
no head nobody asked for. On the same host, tensors go through system shared memory. Over a
network the link can be TLS or mutual TLS (``triton_tls.py``); a refused handshake (wrong
CA, host name or client certificate, plain against TLS) is retried like a server that is
down, with its reason in the log.
The tritonclient calls themselves (connection, shared memory, reading errors) are in
``triton_transport.py``; the served contract checked at connection, in
``triton_contract.py``.

Failures never stop the node: a server that is down (at start-up or later) or a model that
is not loaded makes each frame fail at once with a BackendError that says so, while the
backend reconnects with exponential backoff; a server serving another model (input size,
outputs, variant, weights) is a configuration error, raised at start-up.
"""
import logging
import threading
import time
from typing import Callable, Dict, FrozenSet, Iterable, Mapping, Optional, Tuple

import numpy as np
import torch
import tritonclient.utils as triton_utils

from tipsv2_ros.model.image_path import DenseOutputs
from tipsv2_ros.runtime import triton_contract
from tipsv2_ros.runtime.base import Backend, BackendError, check_tasks
from tipsv2_ros.runtime.triton_tls import explain, TlsSettings
from tipsv2_ros.runtime.triton_transport import (Client, describe_error, is_gone,
                                                 release_stale, SharedMemory)

logger = logging.getLogger(__name__)

LOOPBACK = ('127.0.0.1', 'localhost', '::1')


class TritonUnavailable(BackendError):
    """The server or the model cannot be reached now; the backend keeps retrying."""


TritonMismatch = triton_contract.ServedMismatch


class TritonBackend(Backend):
    """Runs the image path on a Triton server through ``tritonclient``.

    Args:
        url: 'host:port' (gRPC) or 'http://host:port'.
        model_name: the ensemble (or PyTriton model) serving the image path.
        input_size: the (H, W) this node resizes to; the server's input must match.
        tasks: the tasks that may be asked for; the server must produce their outputs.
        served: the expected tensors (``triton_contract.signature``).
        expected: the expected ``tipsv2.*`` metadata (``triton_contract.metadata``).
        device: where inputs come from and outputs are put.
        timeout: seconds a request may take before it counts as a lost server.
        shared_memory: 'auto' (on a loopback URL), 'on' or 'off'.
        backoff: (first, longest) seconds between reconnection attempts.
        log: where connection changes are reported.
        tls: TLS or mutual TLS on gRPC (``triton_tls.TlsSettings``); default plain.
    """

    name = 'triton'

    def __init__(self, url: str, model_name: str, input_size: Tuple[int, int],
                 tasks: Iterable[str], served: triton_contract.Signature,
                 expected: Optional[Mapping[str, str]] = None, device='cpu',
                 timeout: float = 10.0, shared_memory: str = 'auto',
                 backoff: Tuple[float, float] = (0.5, 8.0),
                 log: Callable[[str], None] = logger.info, tls: TlsSettings = TlsSettings()):
        super().__init__(input_size, torch.device(device), tasks)
        if shared_memory not in ('auto', 'on', 'off'):
            raise BackendError(f'triton shared memory {shared_memory!r}: expected auto, on, off')
        self.url, self.model_name, self.timeout = url, model_name, float(timeout)
        self.served, self.expected, self._log = served, dict(expected or {}), log
        host = url.split('://', 1)[-1].rsplit(':', 1)[0].strip('[]')
        tls.check(url)
        self.tls, self._host = tls, host
        self._want_shm = shared_memory == 'on' or (shared_memory == 'auto' and host in LOOPBACK)
        self._backoff, self._delay = backoff, backoff[0]
        self._lock = threading.Lock()
        self._client: Optional[Client] = None
        self._shm: Optional[SharedMemory] = None
        self._retry_at, self._error, self._warned = 0.0, '', set()
        self.max_batch = 1
        try:
            self._connect()
        except TritonUnavailable as error:
            self._failed(error)
            log(f'WARNING: {error}. The node starts anyway; frames fail until the server is '
                'back (retrying with backoff)')

    # --- connection -----------------------------------------------------------------
    def _connect(self) -> None:
        self._disconnect()
        try:
            client = Client(self.url, self.timeout, self.tls)
        except OSError as error:  # a certificate file vanished or became unreadable
            raise TritonUnavailable(f'TLS with Triton server {self.url}: cannot read the '
                                    f'certificates ({describe_error(error)})') from None
        try:
            try:
                client.live()
                if not client.ready(self.model_name):
                    raise TritonUnavailable(
                        f'Triton server {self.url} has no ready model {self.model_name!r} '
                        f'(ready: {client.ready_models()}); check '
                        'triton.model_name and the server log')
                config = client.config(self.model_name)
            except (triton_utils.InferenceServerException, OSError) as error:
                raise self._unreachable(error) from None
            self.max_batch, warnings = triton_contract.check_served(
                config, self.served, self.expected, self.tasks, self.input_size,
                f'Triton model {self.model_name!r} on {self.url}')
            for key, text in warnings:
                self._warn_once(key, text)
            if self._want_shm:
                release_stale(client, self._log)
                self._shm = self._shared_memory(client, 1)
        except BackendError:
            client.close()
            raise
        self._client, self._delay, self._retry_at = client, self._backoff[0], 0.0

    def _unreachable(self, error: Exception) -> 'TritonUnavailable':
        text = describe_error(error)
        reason = explain(text, self.tls, self._host)
        if reason:  # one line that says what to fix, then gRPC's own words
            return TritonUnavailable(f'{self.tls.describe()} connection to Triton server '
                                     f'{self.url} refused: {reason} [{text}]')
        return TritonUnavailable(f'Triton server {self.url} is unreachable ({text})')

    def _failed(self, error: BackendError) -> None:
        self._disconnect()
        self._error = str(error)
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(2 * self._delay, self._backoff[1])

    def _disconnect(self) -> None:
        if self._shm is not None:
            self._shm.close()
        if self._client is not None:
            self._client.close()
        self._shm = self._client = None

    def _shared_memory(self, client: Client, batch: int) -> Optional[SharedMemory]:
        in_bytes = 4 * batch * int(np.prod(self.served.pixel_values))
        out_bytes = 4 * batch * sum(int(np.prod(d)) for d in self.served.outputs.values())
        try:
            return SharedMemory(client, in_bytes, out_bytes)
        except Exception as error:  # e.g. a server in a container without a shared /dev/shm
            self._want_shm = False
            self._warn_once('shm', f'shared memory with {self.url} is not possible '
                            f'({describe_error(error)}); tensors go over the network')
            return None

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._log(f'WARNING: {text}')

    # --- inference ------------------------------------------------------------------
    def infer(self, pixel_values: torch.Tensor, tasks: FrozenSet[str]) -> DenseOutputs:
        tasks = check_tasks(tasks)
        if not tasks <= self.tasks:
            raise ValueError(f'tasks {sorted(tasks - self.tasks)} were not enabled')
        names = [triton_contract.OUTPUTS[t] for t in triton_contract.OUTPUTS if t in tasks]
        pixels = pixel_values.detach().to('cpu', torch.float32).contiguous().numpy()
        with self._lock:
            if self._client is None:
                self._reconnect()
            chunks = [self._request(pixels[i:i + self.max_batch], names)
                      for i in range(0, len(pixels), self.max_batch)]
        joined = {n: torch.from_numpy(np.concatenate([c[n] for c in chunks])).to(self.device)
                  for n in names}
        return DenseOutputs(joined.get('depth'), joined.get('normals'), joined.get('features'))

    def _reconnect(self) -> None:
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise TritonUnavailable(f'{self._error}; next attempt in {wait:.1f} s')
        try:
            self._connect()
        except BackendError as error:
            self._failed(error)
            raise
        self._log(f'connected to Triton: {self.describe()}')

    def _request(self, pixels: np.ndarray, names) -> Dict[str, np.ndarray]:
        client, batch = self._client, len(pixels)
        shapes = {n: (batch, *self.served.outputs[n]) for n in names}
        if self._shm is not None and not self._shm.fits(pixels.nbytes, 4 * sum(
                int(np.prod(s)) for s in shapes.values())):
            self._shm.close()
            self._shm = self._shared_memory(client, batch)
        shm = self._shm
        inputs = [client.module.InferInput(triton_contract.INPUT, list(pixels.shape), 'FP32')]
        outputs, offsets, offset = [client.output(n) for n in names], {}, 0
        if shm is not None:
            name_in, _, handle_in = shm.handles['in']
            shm.shm.set_shared_memory_region(handle_in, [pixels])
            inputs[0].set_shared_memory(name_in, pixels.nbytes)
            for name, output in zip(names, outputs):
                offsets[name], size = offset, 4 * int(np.prod(shapes[name]))
                output.set_shared_memory(shm.handles['out'][0], size, offset=offset)
                offset += size
        else:
            inputs[0].set_data_from_numpy(pixels)
        try:
            result = client.client.infer(self.model_name, inputs, outputs=outputs, **client.kw)
        except (triton_utils.InferenceServerException, OSError) as error:
            if is_gone(error):
                lost = TritonUnavailable(f'lost the Triton server {self.url} '
                                         f'({describe_error(error)})')
                self._failed(lost)
                self._log(f'WARNING: {lost}; frames fail until it is back (reconnecting '
                          'with backoff)')
                raise lost from None
            raise BackendError(f'Triton model {self.model_name!r} on {self.url} failed: '
                               f'{describe_error(error)}') from None
        if shm is None:
            return {n: result.as_numpy(n) for n in names}
        handle_out = shm.handles['out'][2]
        return {n: np.array(shm.shm.get_contents_as_numpy(
            handle_out, np.float32, client.shape(result, n), offset=offsets[n])) for n in names}

    @property
    def connected(self) -> bool:
        """Whether the last connection attempt or request reached the server's model."""
        return self._client is not None

    def describe(self) -> str:
        transport = 'HTTP' if self.url.startswith('http://') else 'gRPC'
        transport += f' over {self.tls.describe()}' if self.tls.ssl else ''
        transport += ', shared memory' if self._shm is not None else ''
        state = f'max batch {self.max_batch}' if self.connected else 'not connected: retrying'
        return (f'{self.name} {self.model_name!r} at {self.url} ({transport}; {state}) for '
                f'{"x".join(map(str, self.input_size))} inputs, outputs on {self.device}')

    def close(self) -> None:
        with self._lock:
            self._disconnect()
