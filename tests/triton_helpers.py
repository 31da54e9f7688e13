# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""What the Triton tests share: where the PyTriton environment is, and whether it exists."""
import pytest

from tipsv2_ros.runtime.serving import dev_server

PYTHON = dev_server.pytriton_python()
# Only the tests that run a server need the PyTriton environment.
needs_server = pytest.mark.skipif(
    not PYTHON.exists(), reason=f'no PyTriton environment at {PYTHON}: scripts/setup.sh '
    '--triton (or --test) creates it')
