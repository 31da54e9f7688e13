# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The per-frame path, from RGB frames to output arrays.

``processing``: resize to the model input and back, intrinsics, points; ``pipeline``: one
backend call per batch and the per-task post-processing; ``labels``: open-vocabulary label
sets; ``colour``: the colour views.
"""
