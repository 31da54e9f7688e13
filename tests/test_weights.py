# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The weight catalogue and the download, against a local server that mimics GCS and the Hub.

The server speaks like the real ones: GCS answers with two ``x-goog-hash`` headers
(crc32c and md5, base64); the Hub's ``resolve`` URL answers 302 with ``X-Repo-Commit`` and
``X-Linked-Etag: "<sha256>"`` and the bytes come from another path (the CDN), whose own ETag
is not a content hash. Nothing here touches the internet.
"""
import argparse
import base64
import hashlib
import http.server
import json
import os
import socket
import threading
import time

import pytest

from tipsv2_ros import fetch, weights
from tipsv2_ros.cli import download as download_cli

COMMIT = 'c0ffee' * 6 + 'abcd'
FAST = {'progress': False, 'retries': 2, 'backoff': 0.0, 'timeout': 5.0}


def _b64(digest):
    return base64.b64encode(digest).decode()


def _crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return (crc ^ 0xFFFFFFFF).to_bytes(4, 'big')


class FakeStorage(http.server.BaseHTTPRequestHandler):
    """One request; the behaviour comes from the `Site` on the server."""

    def do_GET(self):  # noqa: N802 (the http.server API)
        site = self.server.site
        path = self.path.split('?')[0]
        site.requests.append((path, self.headers.get('Range')))
        if path in site.fail_once:
            site.fail_once.discard(path)
            return self.send_error(503)
        if path.startswith('/google/'):
            return self._hub(site, path)
        if path.startswith('/cdn/'):  # a CDN's ETag: hex, but no content hash
            return self._send(site, path.removeprefix('/cdn'), [('ETag', f'"{"e" * 64}"')])
        if path not in site.files:
            return self.send_error(404)
        data = site.files[path]
        md5 = hashlib.md5(b'tampered' if site.bad_hash else data).digest()
        # Like the XML API: one x-goog-hash header per algorithm.
        self._send(site, path, [('x-goog-hash', f'crc32c={_b64(_crc32c(data))}'),
                                ('x-goog-hash', f'md5={_b64(md5)}'), ('ETag', f'"{md5.hex()}"')])

    def _hub(self, site, path):
        if path not in site.files:
            return self.send_error(404)
        data = site.files[path]
        sha = hashlib.sha256(b'tampered' if site.bad_hash else data).hexdigest()
        self.send_response(302)
        for name, value in (('Location', f'/cdn{path}?X-Amz-Signature=abc'),
                            ('ETag', f'W/"{sha}"'), ('X-Linked-Etag', f'"{sha}"'),
                            ('X-Linked-Size', str(len(data))), ('X-Repo-Commit', COMMIT),
                            ('Content-Length', '0')):
            self.send_header(name, value)
        self.end_headers()

    def _send(self, site, path, headers):
        data, start = site.files[path], 0
        ranged = self.headers.get('Range')
        if ranged and not site.ignore_range:
            start = int(ranged.removeprefix('bytes=').split('-')[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header('Content-Range', f'bytes */{len(data)}')
                self.send_header('Content-Length', '0')
                return self.end_headers()
        self.send_response(206 if start else 200)
        for name, value in headers:
            self.send_header(name, value)
        if start:
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        self.send_header('Content-Length', str(len(data) - start))
        self.send_header('Accept-Ranges', 'bytes')
        self.end_headers()
        body = data[start:]
        if path in site.cut_once:
            site.cut_once.discard(path)
            body = body[:len(body) // 3]  # then the connection closes: a cut
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Site:
    def __init__(self, url):
        self.url, self.files, self.requests = url, {}, []
        self.cut_once, self.fail_once = set(), set()
        self.ignore_range = self.bad_hash = False

    def serve(self, files):
        """Publish random bytes at the paths of `files`; return {name: bytes}."""
        out = {}
        for i, file in enumerate(files):
            out[file.name] = os.urandom(150_000 + 1000 * i)
            self.files[file.url.removeprefix(self.url)] = out[file.name]
        return out

    def count(self, fragment):
        return [r for r in self.requests if fragment in r[0]]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    for name in ('TIPSV2_WEIGHTS_BASE_URL', 'HF_ENDPOINT', 'XDG_CACHE_HOME'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('TIPSV2_CACHE', str(tmp_path / 'cache'))


@pytest.fixture
def site():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), FakeStorage)
    server.daemon_threads = True
    server.site = Site(f'http://127.0.0.1:{server.server_address[1]}')
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.site
    server.shutdown()
    server.server_close()


def _closed_port_url():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return f'http://127.0.0.1:{sock.getsockname()[1]}'


def _sidecar(path):
    return json.loads(path.with_name(path.name + '.verified.json').read_text())


def test_catalogue_names_the_official_files():
    gcs = weights.official_files('b14')
    bucket = 'https://storage.googleapis.com/tips_data'
    assert [f.url for f in gcs] == [
        f'{bucket}/v2_0/checkpoints/pytorch/tips_v2_oss_b14_vision.npz',
        f'{bucket}/v2_0/checkpoints/pytorch/tips_v2_oss_b14_text.npz',
        f'{bucket}/v1_0/checkpoints/tokenizer.model',
        *(f'{bucket}/v2_0/checkpoints/scenic/tips_v2_b14_{task}_dpt.zip'
          for task in ('depth', 'normals', 'segmentation'))]
    assert [f.name for f in gcs][:3] == ['tips_v2_oss_b14_vision.npz',
                                         'tips_v2_oss_b14_text.npz', 'tokenizer.model']
    assert {f.licence for f in gcs} == {'CC-BY-4.0'}
    # So400m/14: the names of pytorch/checkpoints/download_checkpoints.sh and of the decoder
    # notebook (encoders so14, DPT heads so400m14), nothing else.
    so = weights.official_files('so400m14', tasks=('depth',))
    assert [f.url for f in so] == [
        f'{bucket}/v2_0/checkpoints/pytorch/tips_v2_oss_so14_vision.npz',
        f'{bucket}/v2_0/checkpoints/pytorch/tips_v2_oss_so14_text.npz',
        f'{bucket}/v1_0/checkpoints/tokenizer.model',
        f'{bucket}/v2_0/checkpoints/scenic/tips_v2_so400m14_depth_dpt.zip']
    hf = weights.official_files('g14', 'hf', tasks=('normals',))
    assert [(f.url, f.roles) for f in hf] == [
        ('https://huggingface.co/google/tipsv2-g14/resolve/main/model.safetensors',
         ('vision', 'text')),
        ('https://huggingface.co/google/tipsv2-g14/resolve/main/tokenizer.model', ('tokenizer',)),
        ('https://huggingface.co/google/tipsv2-g14-dpt/resolve/main/model.safetensors',
         ('normals_head',)),
        ('https://huggingface.co/google/tipsv2-g14-dpt/resolve/main/config.json', ())]
    assert {f.licence for f in hf} == {'Apache-2.0'}
    with pytest.raises(ValueError, match='unknown variant'):
        weights.official_files('s14')
    with pytest.raises(ValueError, match='unknown task'):
        weights.official_files('b14', tasks=('semantic',))


def test_base_url_and_cache_dir_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv('TIPSV2_WEIGHTS_BASE_URL', 'http://mirror.local/')
    assert weights.official_files('l14')[0].url.startswith('http://mirror.local/tips_data/')
    assert weights.official_files('l14', 'hf')[0].url.startswith('http://mirror.local/google/')
    assert weights.variant_dir('l14') == tmp_path / 'cache' / 'l14'
    monkeypatch.delenv('TIPSV2_CACHE')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert weights.default_cache_dir() == tmp_path / 'xdg' / 'tipsv2_ros'


def test_gcs_download_verifies_md5_and_writes_a_sidecar(site, tmp_path):
    files = weights.official_files('b14', tasks=('depth',), base_url=site.url)
    data = site.serve(files)
    paths = fetch.download(files, tmp_path, **FAST)
    for path in paths:
        assert path.read_bytes() == data[path.name]
        record = _sidecar(path)
        assert record['size'] == len(data[path.name])
        assert record['verified'] == {'md5': hashlib.md5(data[path.name]).hexdigest()}
        assert record['sha256'] == hashlib.sha256(data[path.name]).hexdigest()
        assert record['licence'] == 'CC-BY-4.0' and record['url'].startswith(site.url)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == '.part') == []


def test_hub_download_takes_the_sha256_from_the_redirect(site, tmp_path):
    files = weights.official_files('b14', 'hf', base_url=site.url)
    data = site.serve(files)
    paths = fetch.download(files, tmp_path, **FAST)
    assert len(site.count('/cdn/')) == len(files)  # the bytes came from the "CDN"
    for path in paths:
        assert path.read_bytes() == data[path.relative_to(tmp_path).as_posix()]
        record = _sidecar(path)
        assert record['verified'] == {'sha256': hashlib.sha256(path.read_bytes()).hexdigest()}
        assert record['revision'] == COMMIT and record['licence'] == 'Apache-2.0'


def test_verified_files_are_skipped_without_the_network(site, tmp_path):
    files = weights.official_files('b14', tasks=(), base_url=site.url)
    site.serve(files)
    fetch.download(files, tmp_path, **FAST)
    before = len(site.requests)
    assert fetch.download(files, tmp_path, **FAST) == [tmp_path / f.name for f in files]
    assert len(site.requests) == before


def test_a_cut_download_resumes_with_a_range_request(site, tmp_path):
    files = weights.official_files('b14', tasks=(), base_url=site.url)[:1]
    data = site.serve(files)[files[0].name]
    site.cut_once = {files[0].url.removeprefix(site.url)}
    path, = fetch.download(files, tmp_path, **FAST)
    assert path.read_bytes() == data
    first, second = site.requests
    assert first[1] is None and second[1] == f'bytes={len(data) // 3}-'
    assert _sidecar(path)['verified']['md5'] == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize('source', ['gcs', 'hf'])
def test_a_part_left_by_an_earlier_run_is_resumed(site, tmp_path, source):
    files = weights.official_files('b14', source, tasks=(), base_url=site.url)[:1]
    data = site.serve(files)[files[0].name]
    site.cut_once = {files[0].url.removeprefix(site.url)}
    with pytest.raises(weights.WeightsError, match='run the command again to resume'):
        fetch.download(files, tmp_path, **{**FAST, 'retries': 0})
    assert (tmp_path / (files[0].name + '.part')).stat().st_size == len(data) // 3
    path, = fetch.download(files, tmp_path, **FAST)
    assert path.read_bytes() == data
    assert site.requests[-1][1] == f'bytes={len(data) // 3}-'


def test_a_server_ignoring_range_restarts_cleanly(site, tmp_path):
    files = weights.official_files('b14', tasks=(), base_url=site.url)[:1]
    data = site.serve(files)[files[0].name]
    site.cut_once = {files[0].url.removeprefix(site.url)}
    with pytest.raises(weights.WeightsError):
        fetch.download(files, tmp_path, **{**FAST, 'retries': 0})
    site.ignore_range = True
    path, = fetch.download(files, tmp_path, **FAST)
    assert site.requests[-1][1] is not None  # it asked for a range and got a 200
    assert path.read_bytes() == data


def test_a_complete_part_is_finished_after_416(site, tmp_path):
    files = weights.official_files('b14', tasks=(), base_url=site.url)[:1]
    data = site.serve(files)[files[0].name]
    part = tmp_path / (files[0].name + '.part')
    part.write_bytes(data)  # a run that died between the last byte and the rename
    part.with_name(part.name + '.json').write_text(json.dumps(
        {'url': files[0].url, 'hashes': {'md5': hashlib.md5(data).hexdigest()}}))
    path, = fetch.download(files, tmp_path, **FAST)
    assert path.read_bytes() == data and not part.exists()


@pytest.mark.parametrize('source', ['gcs', 'hf'])
def test_a_hash_mismatch_leaves_nothing_behind(site, tmp_path, source):
    files = weights.official_files('b14', source, tasks=(), base_url=site.url)[:1]
    site.serve(files)
    site.bad_hash = True
    with pytest.raises(weights.WeightsError, match='hash mismatch.*deleted'):
        fetch.download(files, tmp_path, **FAST)
    assert [p for p in tmp_path.rglob('*') if p.is_file()] == []


def test_not_found_names_the_url(site, tmp_path):
    files = weights.official_files('b14', tasks=(), base_url=site.url)[:1]
    with pytest.raises(weights.WeightsError, match='vision.npz: HTTP 404, not found'):
        fetch.download(files, tmp_path, **FAST)


def test_server_errors_are_retried(site, tmp_path):
    files = weights.official_files('b14', tasks=(), base_url=site.url)[:1]
    site.serve(files)
    site.fail_once = {files[0].url.removeprefix(site.url)}
    path, = fetch.download(files, tmp_path, **FAST)
    assert path.is_file() and len(site.requests) == 2


def test_an_unreachable_server_fails_fast_with_advice(tmp_path):
    files = weights.official_files('b14', tasks=(), base_url=_closed_port_url())
    start = time.monotonic()
    with pytest.raises(weights.WeightsError, match='cannot reach .*Copy the files into'):
        fetch.download(files, tmp_path, progress=False, retries=3, backoff=1.0)
    assert time.monotonic() - start < 2.0
    assert fetch.can_reach(files[0].url, timeout=1.0) is False


def test_can_reach_a_server_that_answers(site):
    assert fetch.can_reach(site.url + '/missing', timeout=2.0) is True


def test_resolve_weights_names_missing_files_and_the_command(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        weights.resolve_weights('l14', tmp_path)
    message = str(info.value)
    assert 'tips_v2_oss_l14_vision.npz' in message and str(tmp_path / 'l14') in message
    assert '`tipsv2 download l14 --source gcs`' in message
    (tmp_path / 'l14' / 'tipsv2-l14').mkdir(parents=True)
    (tmp_path / 'l14' / 'tipsv2-l14' / 'tokenizer.model').write_bytes(b'')
    with pytest.raises(weights.MissingWeightsError, match='--source hf'):
        weights.resolve_weights('l14', tmp_path)


def test_resolve_weights_finds_each_source(site, tmp_path):
    for source in ('hf', 'gcs'):
        files = weights.official_files('b14', source, tasks=('depth',), base_url=site.url)
        site.serve(files)
        fetch.download(files, weights.variant_dir('b14', tmp_path), **FAST)
        found = weights.resolve_weights('b14', tmp_path, tasks=('depth',), source=source)
        assert found.depth_head.is_file() and found.normals_head is None
        assert (found.vision == found.text) == (source == 'hf')
    assert weights.resolve_weights('b14', tmp_path, tasks=('depth',)).vision.suffix == '.npz'


def _cli(argv):
    parser = argparse.ArgumentParser(prog='tipsv2')
    download_cli.register(parser.add_subparsers())
    args = parser.parse_args(['download', *argv])
    return args.func(args)


def test_cli_downloads_and_reports_failure_in_one_line(site, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('TIPSV2_WEIGHTS_BASE_URL', site.url)
    site.serve(weights.official_files('b14', 'gcs', tasks=('normals',)))
    assert _cli(['b14', '--cache-dir', str(tmp_path), '--tasks', 'normals', '--quiet']) == 0
    assert weights.resolve_weights('b14', tmp_path, tasks=('normals',)).normals_head.is_file()
    assert capsys.readouterr().out == ''
    monkeypatch.setenv('TIPSV2_WEIGHTS_BASE_URL', _closed_port_url())
    assert _cli(['l14', '--cache-dir', str(tmp_path), '-q']) == 1
    err = capsys.readouterr().err
    assert err.startswith('tipsv2 download: error: cannot reach') and err.count('\n') == 1
    with pytest.raises(SystemExit):
        _cli(['b14', '--tasks', 'depth,semantic'])


def test_cli_pins_a_hub_revision_and_refuses_one_for_the_bucket(site, tmp_path, monkeypatch,
                                                                capsys):
    monkeypatch.setenv('TIPSV2_WEIGHTS_BASE_URL', site.url)
    site.serve(weights.official_files('b14', 'hf', tasks=(), revision=COMMIT))
    assert _cli(['b14', '--source', 'hf', '--revision', COMMIT, '--tasks', '',
                 '--cache-dir', str(tmp_path), '-q']) == 0
    assert all(f'/resolve/{COMMIT}/' in path for path, _ in site.requests
               if path.startswith('/google/'))
    assert _cli(['b14', '--source', 'hf', '--revision', 'no-such-branch', '--tasks', '',
                 '--cache-dir', str(tmp_path / 'other'), '-q']) == 1
    assert 'no-such-branch' in capsys.readouterr().err
    assert _cli(['b14', '--revision', COMMIT, '--cache-dir', str(tmp_path), '-q']) == 1
    assert '--revision applies to --source hf only' in capsys.readouterr().err
