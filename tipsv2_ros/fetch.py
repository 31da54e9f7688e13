# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Resumable, hash-checked download of the official weight files (``weights.RemoteFile``).

Integrity comes from the hash each server publishes: GCS's ``x-goog-hash:
crc32c=<b64>,md5=<b64>``, and on the Hub's ``resolve`` answer (a 302 to a CDN for LFS files)
``X-Repo-Commit`` and ``X-Linked-Etag: "<sha256>"``, as ``huggingface_hub`` reads them.
Stdlib and tqdm only.
"""
import base64
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
from typing import Iterable
import urllib.error
import urllib.request

import tqdm

from tipsv2_ros.weights import RemoteFile, variant_dir, WeightsError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


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
        code = _fetch(file.url, final, file, progress, retries, backoff, timeout)
        if code:
            raise WeightsError(f'{file.url}: HTTP {code}, not found or not public; the '
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
