# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The TensorRT backend.

``backend``: ONNX parts -> cached, parity-gated engines; ``build``: the engine builder;
``engine``: runs one engine on torch tensors.
"""
