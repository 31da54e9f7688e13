# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The ROS 2 layer: the node, its parameters and the message conversions."""
