# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The tritonclient calls of backend triton: the connection, shared memory and error reading.

``Client`` wraps the few server calls used, over gRPC (plain or TLS, ``triton_tls``) or HTTP
(their APIs differ in details); ``SharedMemory`` owns the /dev/shm regions registered with a
server on the same host, and ``release_stale`` those left by a node that was killed;
``describe_error`` and ``is_gone`` read a failure (a lost server is retried, other errors are
the frame's). Kept apart from ``TritonBackend``, which decides when to connect, retry and
batch, so that the transport details of tritonclient stay in one place.
"""
import os
import pathlib
import re
import secrets
from typing import Callable, Tuple
import weakref

import tritonclient.utils as triton_utils

from tipsv2_ros.runtime.base import BackendError
from tipsv2_ros.runtime.triton_tls import TlsSettings

# Seconds a (re)connection check may take: an unreachable host must not hold the frame thread
# for a whole inference timeout at every attempt.
CHECK_TIMEOUT = 2.0
# gRPC statuses that mean "no server there (any more)": reconnect with backoff.
_GONE = ('UNAVAILABLE', 'DEADLINE_EXCEEDED', 'CANCELLED', 'NOT_FOUND')
# Region names: tipsv2_<pid>_<64 random bits>_<in|out>. The random part makes them unguessable
# (nobody can pre-create or attach to a robot's region); the pid lets a later node tell the
# regions of a dead one.
SHM_PREFIX = 'tipsv2_'
_SHM_NAME = re.compile(r'^tipsv2_(\d+)_[0-9a-f]{16}_(in|out)$')
_DEV_SHM = pathlib.Path('/dev/shm')


class Client:
    """The few calls used, over gRPC (default) or HTTP (``http://host:port``)."""

    def __init__(self, url: str, timeout: float, tls: TlsSettings = TlsSettings()):
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
            # With TLS the certificate files are read here, at every connection attempt.
            self.client = module.InferenceServerClient(address, **tls.client_kwargs())
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
    """One input and one output region in /dev/shm, registered with the server.

    Regions are created owner-only (0600, by ``multiprocessing.shared_memory``) under
    unguessable names, never attached to when the name already exists, and released by
    ``close``, by the garbage collector or at interpreter exit, whichever comes first.
    """

    def __init__(self, client: Client, in_bytes: int, out_bytes: int):
        from tritonclient.utils import shared_memory
        self.shm, self.client, self.handles = shared_memory, client, {}
        self._release = weakref.finalize(self, _release, client, shared_memory, self.handles)
        tag = f'{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(8)}'
        try:
            for part, size in (('in', in_bytes), ('out', out_bytes)):
                name = f'{tag}_{part}'
                self.handles[part] = (name, size, shared_memory.create_shared_memory_region(
                    name, '/' + name, size, create_only=True))
                client.client.register_system_shared_memory(name, '/' + name, size,
                                                            **client.kw)
        except Exception:
            self.close()
            raise

    def fits(self, in_bytes: int, out_bytes: int) -> bool:
        return self.handles['in'][1] >= in_bytes and self.handles['out'][1] >= out_bytes

    def close(self) -> None:
        self._release()


def _release(client: Client, shared_memory, handles: dict) -> None:
    for name, _, handle in list(handles.values()):
        try:
            client.client.unregister_system_shared_memory(name, **client.kw)
        except Exception:  # the server may be gone; its registry went with it
            pass
        try:
            shared_memory.destroy_shared_memory_region(handle)
        except Exception:  # already unlinked (e.g. by the interpreter's resource tracker)
            pass
    handles.clear()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def release_stale(client: Client, log: Callable[[str], None]) -> int:
    """Unregister and unlink the regions of nodes that died without closing (SIGKILL).

    The server keeps a registered region mapped, so a node killed and restarted in a loop
    would otherwise make its memory grow with every restart. Only this user's files are
    removed; a region of a live process is never touched. Returns how many were released.
    """
    released = set()
    try:
        if client.http:
            regions = [r['name'] for r in client.client.get_system_shared_memory_status()]
        else:
            status = client.client.get_system_shared_memory_status(
                as_json=True, **client.check)
            regions = list(status.get('regions', {}))
    except Exception:  # the API may be restricted to the operator: nothing to unregister
        regions = []
    for name in regions:
        match = _SHM_NAME.match(name)
        if match and not _alive(int(match.group(1))):
            try:
                client.client.unregister_system_shared_memory(name, **client.kw)
                released.add(name)
            except Exception:
                pass
    for path in _DEV_SHM.glob(f'{SHM_PREFIX}*'):
        match = _SHM_NAME.match(path.name)
        try:
            if match and path.stat().st_uid == os.getuid() and not _alive(
                    int(match.group(1))):
                path.unlink()
                released.add(path.name)
        except OSError:
            pass
    if released:
        log(f'released {len(released)} shared-memory regions left by nodes that did not '
            f'exit cleanly: {", ".join(sorted(released))}')
    return len(released)


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
