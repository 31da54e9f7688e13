# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The node as a child process: start it as a user would, watch it, stop it cleanly.

Shared by ``tipsv2 demo``, the benchmark, the soak tool and the tests, which all run the
real node in its own process (``tipsv2 node``) and talk to it over DDS.
"""
import json
import os
import signal
import subprocess
import sys
from typing import Dict, Iterable, List, Optional


def node_command(params: Dict[str, object], namespace: str,
                 params_file: Optional[str] = '', extra: Iterable[str] = ()) -> List[str]:
    """Return ``tipsv2 node`` with ``-p`` overrides (JSON values parse as YAML).

    Args:
        params: parameter values, e.g. {'labels': ['floor', 'wall']}.
        namespace: the node's namespace.
        params_file: '' for none, None for the package's config/perception.yaml.
        extra: further arguments after the parameters (e.g. ``--ros-args ...``).
    """
    script = os.path.join(os.path.dirname(sys.executable), 'tipsv2')
    command = ([script] if os.path.exists(script)
               else [sys.executable, '-m', 'tipsv2_ros.cli.main'])
    command += ['node', '--namespace', namespace]
    if params_file is not None:
        command += ['--params-file', params_file]
    for name, value in params.items():
        command += ['-p', f'{name}:={json.dumps(value)}']
    return command + list(extra)


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
    """Stop ``proc`` as Ctrl-C would (kill it if it hangs); return its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def figures(pid: int) -> Dict[str, int]:
    """Resident memory (kB), its peak, threads and open file descriptors, from /proc."""
    found = {}
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            key, _, value = line.partition(':')
            if key in ('VmRSS', 'VmHWM', 'Threads'):
                found[key] = int(value.split()[0])
    found['fds'] = len(os.listdir(f'/proc/{pid}/fd'))
    return found
