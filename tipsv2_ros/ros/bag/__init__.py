# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2 bag``: the node's frame path over a recorded bag, into a new bag.

``reader`` reads sqlite3 and mcap bags (damaged ones up to the damage); ``writer`` writes
the output bag; ``message_types`` the message definitions; ``cameras`` picks the camera
topics and decodes frames; ``params`` reads the node's parameters; ``perception`` runs
the node's frame path on every frame (``camera_io.frame_messages``).
"""
