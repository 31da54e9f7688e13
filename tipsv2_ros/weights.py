# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The official TIPSv2 weight files and their resumable, hash-checked download.

Names follow the ``google-deepmind/tips`` README and notebooks (GCS bucket ``tips_data``,
CC-BY-4.0) and the ``google/tipsv2-*`` Hugging Face repos (Apache-2.0). Integrity comes from
the hash each server publishes: GCS's ``x-goog-hash: crc32c=<b64>,md5=<b64>``, and on the
Hub's ``resolve`` answer (a 302 to a CDN for LFS files) ``X-Repo-Commit`` and
``X-Linked-Etag: "<sha256>"``, as ``huggingface_hub`` reads them. Stdlib and tqdm only.
"""
import base64
import dataclasses
import datetime
import hashlib
import http.client
import json
import logging
import os
import pathlib
import re
import sys
import time
from typing import Iterable, NamedTuple
import urllib.error
import urllib.request

import tqdm

logger = logging.getLogger(__name__)

VARIANTS = ('b14', 'l14', 'so400m14', 'g14')
TASKS = ('depth', 'normals', 'segmentation')
SOURCES = ('gcs', 'hf')
GCS_URL = 'https://storage.googleapis.com'
HF_URL = 'https://huggingface.co'
# The README links tips_v2_oss_so14_*, the Scenic download script so400m14: try both.
_GCS_NAMES = {'b14': ('b14',), 'l14': ('l14',), 'so400m14': ('so14', 'so400m14'),
              'g14': ('g14',)}
_CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """A download failed; the message names the URL and what to do."""


class MissingWeightsError(FileNotFoundError):
    """Weight files are not in the cache; the message says how to get them."""


class WeightPaths(NamedTuple):
    """Local files of one variant (one file holds both towers in a Hugging Face download)."""

    vision: pathlib.Path
    text: pathlib.Path
    tokenizer: pathlib.Path
    depth_head: pathlib.Path | None = None
    normals_head: pathlib.Path | None = None
    segmentation_head: pathlib.Path | None = None


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One official file."""

    name: str  # path inside the variant's cache folder
    url: str
    licence: str  # SPDX identifier
    roles: tuple[str, ...]  # the WeightPaths fields this file fills
    variant: str  # also the cache sub-folder
    fallback_urls: tuple[str, ...] = ()  # tried in order after a 404


def default_cache_dir() -> pathlib.Path:
    """``$TIPSV2_CACHE``, else ``$XDG_CACHE_HOME/tipsv2_ros``, else ``~/.cache/tipsv2_ros``."""
    if os.environ.get('TIPSV2_CACHE'):
        return pathlib.Path(os.environ['TIPSV2_CACHE']).expanduser()
    return pathlib.Path(os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache',
                        'tipsv2_ros')


def variant_dir(variant: str, cache_dir: os.PathLike | str | None = None) -> pathlib.Path:
    """Return the folder of one variant's files, ``<cache_dir or default>/<variant>``."""
    return pathlib.Path(cache_dir or default_cache_dir()) / variant


def official_files(variant: str, source: str = 'gcs', tasks: Iterable[str] = TASKS, *,
                   base_url: str | None = None, revision: str = 'main') -> list[RemoteFile]:
    """Return the files a variant needs: vision, text, tokenizer and one DPT head per task.

    Args:
        variant: one of `VARIANTS`.
        source: ``'gcs'`` (official bucket, CC-BY-4.0) or ``'hf'`` (Hugging Face, Apache-2.0).
        tasks: subset of `TASKS` whose DPT heads are wanted.
        base_url: replaces the host (default ``$TIPSV2_WEIGHTS_BASE_URL``), e.g. for a mirror
            that keeps the ``/tips_data/...`` and ``/google/...`` paths.
        revision: Hugging Face branch or commit.
    """
    tasks = tuple(tasks)
    for value, allowed, what in ((variant, VARIANTS, 'variant'), (source, SOURCES, 'source'),
                                 *((task, TASKS, 'task') for task in tasks)):
        if value not in allowed:
            raise ValueError(f'unknown {what} {value!r}; expected one of {", ".join(allowed)}')
    base = base_url or os.environ.get('TIPSV2_WEIGHTS_BASE_URL')
    if source == 'gcs':
        root = (base or GCS_URL).rstrip('/') + '/tips_data'

        def gcs(roles, *paths):
            return RemoteFile(paths[0].rsplit('/', 1)[-1], f'{root}/{paths[0]}', 'CC-BY-4.0',
                              roles, variant, tuple(f'{root}/{p}' for p in paths[1:]))

        npz = 'v2_0/checkpoints/pytorch/tips_v2_oss_{}_{}.npz'
        return [gcs((tower,), *(npz.format(n, tower) for n in _GCS_NAMES[variant]))
                for tower in ('vision', 'text')] + [
            gcs(('tokenizer',), 'v1_0/checkpoints/tokenizer.model')] + [
            gcs((f'{task}_head',), f'v2_0/checkpoints/scenic/tips_v2_{variant}_{task}_dpt.zip')
            for task in TASKS if task in tasks]
    root = (base or os.environ.get('HF_ENDPOINT') or HF_URL).rstrip('/')

    def hf(repo, filename, roles):
        url = f'{root}/google/{repo}/resolve/{revision}/{filename}'
        return RemoteFile(f'{repo}/{filename}', url, 'Apache-2.0', roles, variant)

    heads = tuple(f'{task}_head' for task in TASKS if task in tasks)
    return [hf(f'tipsv2-{variant}', 'model.safetensors', ('vision', 'text')),
            hf(f'tipsv2-{variant}', 'tokenizer.model', ('tokenizer',))] + (
        [hf(f'tipsv2-{variant}-dpt', 'model.safetensors', heads)] if heads else [])


def resolve_weights(variant: str, cache_dir: os.PathLike | str | None = None,
                    tasks: Iterable[str] = TASKS, source: str | None = None) -> WeightPaths:
    """Find a downloaded variant: the GCS files, else the Hugging Face ones.

    Raises:
        MissingWeightsError: naming the missing files and the command that fetches them.
    """
    tasks, folder, missing, present = tuple(tasks), variant_dir(variant, cache_dir), {}, {}
    for src in (source,) if source else SOURCES:
        files = official_files(variant, src, tasks)
        missing[src] = [f.name for f in files if not (folder / f.name).is_file()]
        if not missing[src]:
            return WeightPaths(**{role: folder / f.name for f in files for role in f.roles})
        present[src] = len(files) - len(missing[src])
    src = max(present, key=present.get)  # the source begun with; GCS when none was
    raise MissingWeightsError(
        f'TIPSv2 {variant} weights missing from {folder}: {", ".join(missing[src])}; '
        f'fetch them with `tipsv2 download {variant} --source {src}` or copy them there by '
        'hand (README, "Weights")')


def can_reach(url: str, timeout: float = 3.0) -> bool:
    """Whether the server behind `url` answers at all (any HTTP status) within `timeout`."""
    try:
        urllib.request.build_opener(_Hops(follow=False)).open(
            urllib.request.Request(url, method='HEAD'), timeout=timeout).close()
    except (OSError, http.client.HTTPException, ValueError) as e:
        return isinstance(e, urllib.error.HTTPError)  # an HTTP error is still an answer
    return True


def download(files: Iterable[RemoteFile], directory: os.PathLike | str | None = None,
             progress: bool = True, retries: int = 3, backoff: float = 1.0,
             timeout: float = 30.0) -> list[pathlib.Path]:
    """Fetch `files` into `directory` (default: `variant_dir`); return their local paths.

    A file with a ``<file>.verified.json`` sidecar of matching size, or copied in by hand, is
    kept without touching the network. Otherwise bytes stream into ``<file>.part`` (resumed
    with a ``Range`` request), are checked against the server's hash and renamed into place.
    Transient failures are retried `retries` times, ``backoff * 2**n`` seconds apart.

    Raises:
        WeightsError: unreachable server, HTTP error, or hash mismatch (the bad file is gone).
    """
    paths = []
    for file in files:
        final = pathlib.Path(directory or variant_dir(file.variant)) / file.name
        paths.append(final)
        # Kept: verified earlier (the sidecar's size matches), or copied in by hand (none).
        if final.is_file() and (not _sidecar(final).is_file() or _read_json(
                _sidecar(final)).get('size') == final.stat().st_size):
            continue
        final.unlink(missing_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        urls = (file.url, *file.fallback_urls)
        for url in urls:  # candidates, for names the upstream sources disagree on
            code = _fetch(url, final, file, progress, retries, backoff, timeout)
            if not code:
                break
        else:
            raise WeightsError(f'{" or ".join(urls)}: HTTP {code}, not found or not public; the '
                               'upstream layout may have changed, see README "Weights"')
    return paths


class _Retry(Exception):
    pass


class _Hops(urllib.request.HTTPRedirectHandler):
    """Keeps each redirect's headers: the Hub puts the LFS sha256 on its 302, not the CDN."""

    def __init__(self, follow=True):
        self.headers, self.follow = [], follow

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl) if self.follow \
            else None


def _sidecar(path, suffix='.verified.json'):
    return path.with_name(path.name + suffix)


def _read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _fetch(url, final, file, progress, retries, backoff, timeout):
    """Download one URL into `final`; return None, or the HTTP 403/404 it answered."""
    for attempt in range(retries + 1):
        try:
            return _attempt(url, final, file, progress, timeout, first=attempt == 0)
        except _Retry as e:
            if attempt == retries:
                raise WeightsError(f'{url}: {e} (gave up after {retries} retries; run the '
                                   'command again to resume)') from None
            logger.warning('%s: %s; retrying', url, e)
            time.sleep(backoff * 2 ** attempt)


def _attempt(url, final, file, progress, timeout, first):
    part = final.with_name(final.name + '.part')
    # Bytes already in the part are only trusted with the hashes their download started with.
    known = _read_json(_sidecar(part, '.json')) if part.is_file() else {}
    offset = part.stat().st_size if 'hashes' in known else 0
    headers = {'User-Agent': 'tipsv2_ros', 'Accept-Encoding': 'identity',
               **({'Range': f'bytes={offset}-'} if offset else {})}
    hops = _Hops()
    try:
        resp = urllib.request.build_opener(hops).open(
            urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code in (403, 404):  # GCS says 403 for a missing object in an unlisted bucket
            return e.code
        if e.code == 416:  # the part is whole (a run died before the rename), or stale
            if offset and _total(e.headers.get('Content-Range')) == offset:
                return _finish(url, final, part, file, known)
            part.unlink(missing_ok=True)
        if e.code in (408, 416, 429) or e.code >= 500:
            raise _Retry(f'HTTP {e.code} {e.reason}') from None
        raise WeightsError(f'{url}: HTTP {e.code} {e.reason}; the file may have moved or need '
                           'access rights, see README "Weights"') from None
    except (OSError, http.client.HTTPException) as e:
        reason = getattr(e, 'reason', e)
        if first:  # DNS failure, refused, connect timeout: waiting will not help
            raise WeightsError(f'cannot reach {url} ({reason}); no internet? Copy the files into '
                               f'{final.parent} by hand (README, "Weights") or try the other '
                               '--source') from None
        raise _Retry(f'connection failed ({reason})') from None
    with resp:
        seen = [*hops.headers, resp.headers]
        hashes = _published_hashes(seen)
        commit = next((h['X-Repo-Commit'] for h in seen if h.get('X-Repo-Commit')), None)
        if resp.status == 206 and offset:
            if (not resp.headers.get('Content-Range', '').startswith(f'bytes {offset}-')
                    or any(known['hashes'].get(k, v) != v for k, v in hashes.items())):
                part.unlink()
                raise _Retry('the file changed on the server or the range was wrong')
            known['hashes'].update(hashes)
            total = _total(resp.headers['Content-Range'])
        else:  # 200: a fresh start, also when the server ignored Range
            offset, length = 0, resp.headers.get('Content-Length')
            total = int(length) if length else None
            known = {'url': url, 'hashes': hashes, 'revision': commit}
            _sidecar(part, '.json').write_text(json.dumps(known))
        with open(part, 'ab' if offset else 'wb') as out, tqdm.tqdm(
                total=total, initial=offset, desc=file.name, unit='B', unit_scale=True,
                unit_divisor=1024, file=sys.stderr, disable=not progress) as bar:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _Retry(f'connection lost ({e!r})') from None
                if not chunk:
                    break
                out.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:  # urllib returns b'' on a cut, not an error
        raise _Retry(f'connection cut at {size} of {total} bytes')
    return _finish(url, final, part, file, known)


def _total(content_range):
    match = re.search(r'/(\d+)\s*$', content_range or '')
    return int(match[1]) if match else None


def _published_hashes(headers_seq):
    """Lowercase hex digests from GCS's x-goog-hash and the Hub's X-Linked-Etag / ETag."""
    found = {}
    for headers in headers_seq:
        for item in ','.join(headers.get_all('x-goog-hash') or ()).split(','):
            algo, _, value = item.strip().partition('=')
            if algo in ('md5', 'crc32c') and value:
                found.setdefault(algo, base64.b64decode(value).hex())
        if headers.get('X-Repo-Commit'):  # only the Hub's own ETag is a content hash
            etag = (headers.get('X-Linked-Etag') or headers.get('ETag') or '').lower()
            etag = etag.removeprefix('w/').strip('"')
            if re.fullmatch('[0-9a-f]{64}', etag):  # LFS files; others have a git blob id
                found.setdefault('sha256', etag)
    return found


def _finish(url, final, part, file, known):
    size, expected = part.stat().st_size, known['hashes']
    hashers = {'sha256': hashlib.sha256()}  # always: the sidecar records it for engines
    if 'md5' in expected:
        hashers['md5'] = hashlib.md5(usedforsecurity=False)
    with open(part, 'rb') as f:
        while chunk := f.read(_CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    # crc32c has no stdlib implementation; GCS sends md5 too except for composite objects.
    checked = {k: v for k, v in expected.items() if k in hashers}
    bad = {k: hashers[k].hexdigest() for k, v in checked.items() if hashers[k].hexdigest() != v}
    part_meta = _sidecar(part, '.json')
    if bad:
        part.unlink()
        part_meta.unlink(missing_ok=True)
        detail = ', '.join(f'{k} {got} != published {expected[k]}' for k, got in bad.items())
        raise WeightsError(f'{url}: hash mismatch ({detail}); the download was deleted, '
                           'run the command again')
    if not checked:
        logger.warning('%s: only the size was checked (published hashes: %s)', url,
                       ', '.join(expected) or 'none')
    record = {'url': url, 'size': size, 'sha256': hashers['sha256'].hexdigest(),
              'verified': checked, 'revision': known.get('revision'), 'licence': file.licence,
              'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
    # Sidecar first: a final file without one then always means "copied in by hand".
    _sidecar(final).write_text(json.dumps(record, indent=1) + '\n')
    os.replace(part, final)
    part_meta.unlink(missing_ok=True)
