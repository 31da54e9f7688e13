# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Runs the development Triton server (``pytriton_server``) as a child process: tests, benchmarks.

The server lives in another virtual environment (``.venv/pytriton``: nvidia-pytriton needs
numpy<2). Started from a ROS-wheels venv python, a child inherits that venv's bootstrap
marker and library path, which break the other interpreter: ``child_env`` removes them and
puts this source tree (not the site-packages around it) on PYTHONPATH. Stdlib only.
"""
import hashlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence
import urllib.error
import urllib.request

MODEL_NAME = 'tipsv2_image_path'  # triton_contract.MODEL_NAME, without importing torch here
_PARENT_ONLY = ('_ROS_WHEELS_BOOTSTRAP_COMPLETE', 'LD_LIBRARY_PATH', 'LD_PRELOAD', 'PYTHONPATH',
                'PYTHONHOME', 'VIRTUAL_ENV')


def pytriton_python() -> pathlib.Path:
    """Return the PyTriton venv's python: $TIPSV2_PYTRITON_PYTHON, else .venv/pytriton."""
    if os.environ.get('TIPSV2_PYTRITON_PYTHON'):
        return pathlib.Path(os.environ['TIPSV2_PYTRITON_PYTHON'])
    for venv in (pathlib.Path(sys.prefix), pathlib.Path(__file__).resolve().parents[3] / '.venv'):
        if (venv / 'pytriton' / 'bin' / 'python').exists():
            return venv / 'pytriton' / 'bin' / 'python'
    return pathlib.Path(sys.prefix) / 'pytriton' / 'bin' / 'python'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def child_env() -> dict:
    """Return this environment minus what belongs to this venv, plus the sources."""
    env = {k: v for k, v in os.environ.items() if k not in _PARENT_ONLY}
    package = pathlib.Path(__file__).resolve().parents[2]
    if 'site-packages' in package.parts:
        # An installed copy: its site-packages (numpy 2, ROS) must stay off the path, so
        # expose the package alone through a link.
        tag = hashlib.sha256(str(package).encode()).hexdigest()[:8]
        link_dir = pathlib.Path(tempfile.gettempdir()) / f'tipsv2_src_{os.getuid()}_{tag}'
        link_dir.mkdir(exist_ok=True)
        link = link_dir / 'tipsv2_ros'
        if not link.is_symlink():
            link.symlink_to(package)
        env['PYTHONPATH'] = str(link_dir)
    else:
        env['PYTHONPATH'] = str(package.parent)
    return env


class DevServer:
    """``pytriton_server`` in the PyTriton venv as a child process on loopback ports.

    Args:
        args: ``pytriton_server`` arguments: weights and size, or ``--repository DIR``.
        log_path: where the server's output goes (it is verbose).
        python: the PyTriton venv's python (default: ``pytriton_python()``).
    """

    def __init__(self, args: Sequence[str], log_path, python=None,
                 model_name: str = MODEL_NAME):
        self.args, self.log_path, self.model_name = list(args), pathlib.Path(log_path), model_name
        self.python = pathlib.Path(python or pytriton_python())
        self.port, self.http_port = free_port(), free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f'127.0.0.1:{self.port}'

    def start(self, timeout: float = 120.0) -> 'DevServer':
        """Start the server (same ports as before on a restart); wait until it serves."""
        command = [str(self.python), '-m', 'tipsv2_ros.runtime.serving.pytriton_server',
                   *self.args,
                   '--port', str(self.port), '--http-port', str(self.http_port),
                   '--model-name', self.model_name]
        with open(self.log_path, 'a') as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                         env=child_env(), start_new_session=True)
        ready = f'http://127.0.0.1:{self.http_port}/v2/models/{self.model_name}/ready'
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f'triton_serve exited ({self.proc.returncode}):\n'
                                   f'{self.log_tail()}')
            try:
                with urllib.request.urlopen(ready, timeout=1.0) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f'triton_serve not ready after {timeout:.0f} s:\n{self.log_tail()}')

    def stop(self, timeout: float = 10.0) -> None:
        """Stop it like Ctrl-C; kill what is left of its process group after ``timeout``.

        A clean stop takes a few seconds (tritonserver waits at most
        ``pytriton_server.EXIT_TIMEOUT_S`` for requests in flight); a server still up after
        ``timeout`` will not stop by itself.
        """
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:  # tritonserver and the backend stubs are in the group this call started
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors='replace')[-chars:]
        except OSError:
            return ''

    def __enter__(self) -> 'DevServer':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
