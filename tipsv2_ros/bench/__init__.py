# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2 bench``: where the time of a frame goes, as ratios measured side by side.

Shared machines are noisy, so every claim is a ratio against a reference measured in the
same run, interleaved round by round with the thing measured (``timing.interleave``).

- ``timing``: samples, percentiles, interleaved measurement, paired ratios.
- ``machine``: the one-line description of the machine printed above the table.
- ``flops``: analytic FLOP counts of the encoder and the DPT heads, and the matmul rate.
- ``references``: the transformers Tipsv2 model on the same weights, other backends.
- ``table``: rows and the printed table.
- ``runner``: runs the sections and collects the rows; the DDS part
  (``bench.dds``: ``e2e`` and ``messages``, the only rclpy users) is imported only when
  asked for.
"""
