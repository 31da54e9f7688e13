# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Inference backends behind one interface, the frame pipeline and label handling."""
