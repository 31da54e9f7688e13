# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""TIPSv2 in pure PyTorch: both towers, the DPT heads, the loaders and zero-shot segmentation.

A reimplementation of google-deepmind/tips ``pytorch/`` @4db271d that loads the released
files (official ``.npz``, Scenic DPT ``.zip``, Hugging Face ``model.safetensors``) and matches
the official outputs (tests/test_model_parity.py). Typical use::

    model = TipsV2.from_files('vision.npz', 'text.npz', 'tokenizer.model',
                              depth_head='depth_dpt.zip', normals_head='normals_dpt.zip')
    path = model.image_path(('depth', 'normals', 'segmentation'), input_size=448)
    outputs = path(pixel_values)  # DenseOutputs: depth, normals, features by name
    classifier = model.text_classifier(['floor', 'wall', 'person'])
    labels, confidence = segment(outputs.features, classifier, model.temperature, (480, 640))
"""
from tipsv2_ros.model.checkpoint import CheckpointError
from tipsv2_ros.model.config import (DPTConfig, ModelConfig, TextConfig, TINY, VARIANTS,
                                     VisionConfig)
from tipsv2_ros.model.image_path import DenseOutputs, EncoderOutputs, ImagePath
from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.model.vision import ImageTokens, Intermediate
from tipsv2_ros.model.zero_shot import segment, Segmentation, TEMPLATES
from tipsv2_ros.tasks import REGISTRY

TASKS = REGISTRY.defaults()  # the default tasks of an image path

__all__ = [
    'CheckpointError', 'DenseOutputs', 'DPTConfig', 'EncoderOutputs', 'ImagePath',
    'ImageTokens', 'Intermediate', 'ModelConfig', 'Segmentation', 'TASKS', 'TEMPLATES',
    'TextConfig', 'TINY', 'TipsV2', 'VARIANTS', 'VisionConfig', 'segment',
]
