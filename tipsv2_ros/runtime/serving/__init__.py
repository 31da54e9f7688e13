# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Serving the image path from a Triton Inference Server.

``repository``: writes a Triton model repository of the exported parts; ``pytriton_server``:
a development server on PyTriton; ``dev_server``: starts it for tests and the benchmark.
"""
