# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The cache of exported ONNX parts and TensorRT engines: keys, sidecars, validation.

Every cached artefact has a sidecar ``<file>.json`` recording the key it was built for and
the size and SHA-256 of each of its files. The sidecar is written last, so an interrupted
build never looks finished. A cached file is used only when its key matches and every file
is whole; anything else (another torch or TensorRT version, another GPU, a truncated or
corrupt file) is rebuilt, and the log says why.

The node deserializes and runs what it finds here, so whoever can write the folder decides
what network runs: the folder is created owner-only (0700) and a folder that others may
write is refused (``secure_folder``); every file is checked against the SHA-256 in its
sidecar, and a file of another owner or another hash is rebuilt with a warning.
"""
import contextlib
import datetime
import fcntl
import functools
import hashlib
import json
import os
import pathlib
import stat
from typing import Callable, Dict, Iterable, Mapping, Optional, Union

import torch

from tipsv2_ros.runtime.base import BackendError

PathLike = Union[str, os.PathLike]
_CHUNK = 1 << 20
# Files up to this size are hashed whole; larger weight files are sampled (see fingerprint).
_SMALL = 16 << 20


def default_dir() -> pathlib.Path:
    """``engines/`` under the weights cache (``$TIPSV2_CACHE`` or ``~/.cache/tipsv2_ros``)."""
    from tipsv2_ros import weights
    return weights.default_cache_dir() / 'engines'


class CacheError(BackendError):
    """The cache folder cannot be trusted (owned by someone else, or writable by others)."""


def secure_folder(folder: PathLike) -> pathlib.Path:
    """Create ``folder`` owner-only (0700), or check that an existing one is safe to use.

    Raises:
        CacheError: the folder belongs to another user or others may write it; the
            message names the fix.
    """
    folder = pathlib.Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = folder.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise CacheError(f'cache folder {folder} is not a folder')
    if info.st_uid != os.getuid():
        raise CacheError(f'cache folder {folder} belongs to uid {info.st_uid}, not to this user '
                         f'(uid {os.getuid()}): anything in it would be run; use a folder of '
                         'your own (engine_cache_dir, tipsv2 export --out) or '
                         f'`sudo chown -R {os.getuid()} {folder}`')
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheError(f'cache folder {folder} is writable by others (mode '
                         f'{stat.S_IMODE(info.st_mode):o}): anyone who can write it decides '
                         f'what network runs; fix it with `chmod 700 {folder}`')
    return folder


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path: PathLike) -> str:
    """Identify a weight file's content cheaply, also for multi-GB files.

    Uses the SHA-256 recorded by ``tipsv2 download`` (``<file>.verified.json``) when its size
    matches; else hashes small files whole; else hashes the size and the first, middle and
    last MiB. The last MiB of a released ``.npz``/``.zip`` holds the zip directory with each
    array's CRC-32, so a changed array changes the fingerprint.
    """
    path = pathlib.Path(path)
    size = path.stat().st_size
    record = _read_json(path.with_name(path.name + '.verified.json'))
    if record.get('sha256') and record.get('size') == size:
        return 'sha256:' + record['sha256']
    if size <= _SMALL:
        return 'sha256:' + sha256_file(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, 'rb') as f:
        for offset in (0, size // 2 - _CHUNK // 2, size - _CHUNK):
            f.seek(offset)
            digest.update(f.read(_CHUNK))
    return 'sampled:' + digest.hexdigest()


def checkpoint_id(paths: Iterable[PathLike]) -> str:
    """Combine the fingerprints of the weight files an artefact is built from."""
    fingerprints = sorted(fingerprint(p) for p in paths)
    return hashlib.sha256('\n'.join(fingerprints).encode()).hexdigest()


def tensors_id(module: torch.nn.Module) -> str:
    """Hash every parameter and buffer of ``module`` (exact; ~1 s per GB of weights)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f'{name}:{tensor.dtype}:{tuple(tensor.shape)}'.encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b'')
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def code_id() -> str:
    """Return a short hash of the model code: an exported graph is only as current as it.

    Versions alone miss an edit of the model (a faster but reordered head, a fix): the
    sources of ``tipsv2_ros/model`` are hashed instead, once per process.
    """
    folder = pathlib.Path(__file__).resolve().parents[1] / 'model'
    sha = hashlib.sha256()
    for path in sorted(folder.glob('*.py')):
        sha.update(path.name.encode() + b'\0' + path.read_bytes())
    return sha.hexdigest()[:12]


def digest(key: Mapping) -> str:
    """Return a short stable hash of a key, for file names."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def sidecar(path: PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    return path.with_name(path.name + '.json')


def load(path: PathLike, key: Mapping, log: Callable[[str], None],
         what: str = 'cache') -> Optional[dict]:
    """Return the sidecar record of a valid cached ``path``, or None (logging why if stale).

    Args:
        path: the artefact (its extra files are listed in the sidecar).
        key: what it must have been built for.
        log: where the reason for a rebuild goes.
        what: how the log names the artefact.
    """
    path = pathlib.Path(path)
    side = sidecar(path)
    if not path.exists() and not side.exists():
        return None  # never built: nothing to say
    if side.exists() and side.stat().st_uid != os.getuid():
        log(f'WARNING: {what}: {side.name} belongs to uid {side.stat().st_uid}, not to this '
            'user; not trusted, rebuilding')
        return None
    record = _read_json(side)
    if 'key' not in record or not isinstance(record.get('files'), dict):
        log(f'{what}: {path.name} has no valid sidecar (interrupted build?); rebuilding')
        return None
    # Compare as JSON sees it: tuples in ``key`` come back from the sidecar as lists.
    changed = describe_change(record['key'], json.loads(json.dumps(dict(key))))
    if changed:
        log(f'{what}: {path.name} was built for {changed}; rebuilding')
        return None
    for name, meta in record['files'].items():
        file = path.parent / name
        if not file.is_file():
            log(f'{what}: {name} is missing; rebuilding')
            return None
        info = file.stat()
        if info.st_uid != os.getuid():
            log(f'WARNING: {what}: {name} belongs to uid {info.st_uid}, not to this user; not '
                'trusted, rebuilding')
            return None
        size = info.st_size
        if size != meta.get('size'):
            log(f'{what}: {name} is truncated or changed ({size} bytes, expected '
                f'{meta.get("size")}); rebuilding')
            return None
        if sha256_file(file) != meta.get('sha256'):
            log(f'WARNING: {what}: {name} is corrupt (SHA-256 mismatch); rebuilding (it was '
                'not loaded: its content is not what its sidecar records)')
            return None
    return record


def store(path: PathLike, built: Mapping[str, PathLike], key: Mapping,
          extra: Optional[Mapping] = None) -> dict:
    """Move freshly built files into place, then write the sidecar (the commit point).

    Args:
        path: the artefact's final path.
        built: final file name (in ``path``'s folder) -> the temporary file holding it.
        key: what it was built for.
        extra: more to record (timings, parity figures).

    Returns:
        The sidecar record.
    """
    path = pathlib.Path(path)
    side = sidecar(path)
    side.unlink(missing_ok=True)  # from here until the end the old artefact is invalid
    files = {}
    for name, temporary in built.items():
        files[name] = {'size': os.path.getsize(temporary), 'sha256': sha256_file(temporary)}
        os.replace(temporary, path.parent / name)
    now = datetime.datetime.now(datetime.timezone.utc)
    record = {'key': dict(key), 'files': files, **dict(extra or {}),
              'created': now.isoformat(timespec='seconds')}
    write_json(side, record)
    return record


def write_json(path: PathLike, record: Mapping) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    path = pathlib.Path(path)
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    temporary.write_text(json.dumps(record, indent=1, sort_keys=True) + '\n')
    os.replace(temporary, path)


def describe_change(old: Mapping, new: Mapping) -> str:
    """Return '' when equal, else e.g. "torch '2.12.0' (now '2.13.0')"."""
    changes = [f'{name} {old.get(name)!r} (now {new.get(name)!r})'
               for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
    return ', '.join(changes)


@contextlib.contextmanager
def locked(path: PathLike):
    """Hold an exclusive lock for ``path`` so two processes do not build the same artefact."""
    path = pathlib.Path(path)
    secure_folder(path.parent)
    with open(path.with_name(f'.{path.name}.lock'), 'w') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_json(path: pathlib.Path) -> Dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
