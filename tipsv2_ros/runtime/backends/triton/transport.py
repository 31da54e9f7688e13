# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The tritonclient calls of backend triton: the connection, shared memory and error reading.

``Client`` wraps the few server calls used, over gRPC or HTTP (their APIs differ in details);
``SharedMemory`` owns the /dev/shm regions registered with a server on the same host;
``describe_error`` and ``is_gone`` read a failure (a lost server is retried, other errors are
the frame's). ``TritonBackend`` decides when to connect, retry and batch; the tritonclient
details are all here.
"""
import os
from typing import Tuple

import tritonclient.utils as triton_utils

from tipsv2_ros.runtime.backends.base import BackendError

# Seconds a (re)connection check may take: an unreachable host must not hold the frame thread
# for a whole inference timeout at every attempt.
CHECK_TIMEOUT = 2.0
# gRPC statuses that mean "no server there (any more)": reconnect with backoff.
_GONE = ('UNAVAILABLE', 'DEADLINE_EXCEEDED', 'CANCELLED', 'NOT_FOUND')


class Client:
    """The few calls used, over gRPC (default) or HTTP (``http://host:port``)."""

    def __init__(self, url: str, timeout: float):
        self.http = url.startswith('http://')
        address = url.split('://', 1)[-1]
        if self.http:
            try:
                import tritonclient.http as module
            except ImportError as error:
                raise BackendError(f'triton.url {url}: HTTP needs pip install '
                                   f'"tritonclient[http]" ({error}); or use gRPC') from None
            self.client = module.InferenceServerClient(
                address, connection_timeout=min(timeout, CHECK_TIMEOUT), network_timeout=timeout)
            self.kw = self.check = {}
        else:
            import tritonclient.grpc as module
            self.client = module.InferenceServerClient(address)
            self.kw = {'client_timeout': timeout}
            self.check = {'client_timeout': min(timeout, CHECK_TIMEOUT)}
        self.module = module

    def live(self) -> bool:
        return self.client.is_server_live(**self.check)

    def ready(self, name: str) -> bool:
        return self.client.is_model_ready(name, **self.check)

    def ready_models(self) -> str:
        try:
            if self.http:
                index = self.client.get_model_repository_index()
            else:
                index = self.client.get_model_repository_index(as_json=True, **self.check)
                index = index.get('models', [])
        except triton_utils.InferenceServerException:  # this API may need a token
            return 'not listed by the server'
        return ', '.join(sorted(m['name'] for m in index if m.get('state') == 'READY')) or 'none'

    def config(self, name: str) -> dict:
        if self.http:
            return self.client.get_model_config(name)
        return self.client.get_model_config(name, as_json=True, **self.check)['config']

    def output(self, name: str):
        if self.http:
            return self.module.InferRequestedOutput(name, binary_data=True)
        return self.module.InferRequestedOutput(name)

    def shape(self, result, name: str) -> Tuple[int, ...]:
        meta = result.get_output(name)  # gRPC: a protobuf (its as_json returns None in 2.73)
        return tuple(int(d) for d in (meta['shape'] if self.http else meta.shape))

    def close(self) -> None:
        self.client.close()


class SharedMemory:
    """One input and one output region in /dev/shm, registered with the server."""

    def __init__(self, client: Client, in_bytes: int, out_bytes: int):
        from tritonclient.utils import shared_memory
        self.shm, self.client, self.handles = shared_memory, client, {}
        tag = f'tipsv2_{os.getpid()}_{id(self):x}'
        try:
            for part, size in (('in', in_bytes), ('out', out_bytes)):
                name = f'{tag}_{part}'
                self.handles[part] = (name, size, shared_memory.create_shared_memory_region(
                    name, '/' + name, size))
                client.client.register_system_shared_memory(name, '/' + name, size,
                                                            **client.kw)
        except Exception:
            self.close()
            raise

    def fits(self, in_bytes: int, out_bytes: int) -> bool:
        return self.handles['in'][1] >= in_bytes and self.handles['out'][1] >= out_bytes

    def close(self) -> None:
        for name, _, handle in self.handles.values():
            try:
                self.client.client.unregister_system_shared_memory(name, **self.client.kw)
            except Exception:  # the server may be gone; its registry went with it
                pass
            self.shm.destroy_shared_memory_region(handle)
        self.handles = {}


def describe_error(error: Exception) -> str:
    """Say what failed in one line: the gRPC status and message, or the OS error."""
    if isinstance(error, triton_utils.InferenceServerException):
        status = str(error.status() or '').replace('StatusCode.', '')
        return f'{status}: {error.message()}' if status else str(error.message())
    return f'{type(error).__name__}: {error}'


def is_gone(error: Exception) -> bool:
    """Whether an error means the server is gone (reconnect) rather than the request failed."""
    if isinstance(error, OSError):
        return True
    text = f'{error.status()} {error.message()}'
    return any(s in text for s in _GONE) or 'shared memory' in text
