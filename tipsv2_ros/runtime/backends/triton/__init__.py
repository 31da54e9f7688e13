# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The Triton backend.

``backend``: the client backend; ``transport``: the tritonclient calls; ``contract``: what a
served model must offer (shared with the repository writer and the development server).
"""
