# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The benchmark rows that need DDS; the only part of ``bench`` that imports rclpy.

``e2e``: frames through the node process and back; ``messages``: the cost of output messages.
"""
