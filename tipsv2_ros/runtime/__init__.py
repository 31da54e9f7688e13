# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""What runs the model: backends, export, the per-frame path, start-up wiring.

- ``config``: the typed runtime configuration (built by ``ros.params`` and by the CLI).
- ``startup``: configuration -> model, backend, pipeline and label bank (``build``).
- ``backends/``: the inference backends behind one interface, chosen by name.
- ``export/``: ONNX export of the image path, mixed precision, the file cache, parity.
- ``frame/``: the per-frame path (pre/post-processing, pipeline, labels, colour views).
- ``serving/``: Triton model repositories and the development Triton server.
"""
