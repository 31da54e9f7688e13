# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""TIPSv2 perception for ROS 2: depth, normals and open-vocabulary segmentation.

The generated message and service modules (``tipsv2_ros.msg``, ``tipsv2_ros.srv``) are
installed by the CMake build; extending ``__path__`` lets a source checkout import its own
modules and still find the installed generated ones.
"""
import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)
