# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Where the golden checkpoint lives (tests/data/golden) and how the tests name its files."""
import pathlib

GOLDEN = pathlib.Path(__file__).parent / 'data' / 'golden'

# The node-parameter names of the golden files, as the backends and `tipsv2 export` take them.
FILES = {'model.vision_weights': str(GOLDEN / 'vision.npz'),
         'model.text_weights': str(GOLDEN / 'text.npz'),
         'model.tokenizer': str(GOLDEN / 'tokenizer.model'),
         'model.depth_head': str(GOLDEN / 'depth_dpt.zip'),
         'model.normals_head': str(GOLDEN / 'normals_dpt.zip')}
# The same files by role (``TaskSpec.files``), as the runtime configuration names them.
ROLES = {name.split('.', 1)[1]: path for name, path in FILES.items()}
ROLES_WITH_ADE20K = {**ROLES, 'segmentation_head': str(GOLDEN / 'segmentation_dpt.zip')}


def file_flags(*roles: str) -> list:
    """Return the command-line flags naming the golden files of ``roles``."""
    flags = []
    for role in roles:
        flags += ['--' + role.replace('_', '-'), ROLES_WITH_ADE20K[role]]
    return flags


def load_model(segmentation_head: bool = False):
    """Return the golden TipsV2 with its depth and normals heads (and segmentation if asked)."""
    from tipsv2_ros.model import TipsV2
    segmentation = GOLDEN / 'segmentation_dpt.zip' if segmentation_head else None
    return TipsV2.from_files(GOLDEN / 'vision.npz', GOLDEN / 'text.npz',
                             GOLDEN / 'tokenizer.model', depth_head=GOLDEN / 'depth_dpt.zip',
                             normals_head=GOLDEN / 'normals_dpt.zip',
                             segmentation_head=segmentation)
