# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The image path every backend runs: pixels -> depth, unit normals, zero-shot features.

Mirrors the inference recipes of tips/pytorch/TIPS_decoder_inference.ipynb@4db271d (DPT
heads on normed intermediate layers, normals L2-normalised) and
tips/pytorch/TIPS_zeroshot_segmentation.ipynb@4db271d (value-trick features), fused so the
ViT blocks run once per image. The input size is fixed when the path is built: the resized
positional table is computed then (with antialiasing, which ONNX cannot express) and stored
as a buffer, so the module exports with ``torch.onnx.export(..., dynamo=True)``.

Backends that run heads lazily use the parts: ``encoder`` (pixels -> ``EncoderOutputs``),
``depth`` and ``normals`` (intermediates -> maps).
"""
from typing import NamedTuple, Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from tipsv2_ros.model.dpt import DepthHead, NormalsHead
from tipsv2_ros.model.vision import Intermediate, VisionTransformer

TASKS = ('depth', 'normals', 'segmentation')
# The outputs of the (exported) image path, in order: the DenseOutputs fields it fills.
PATH_OUTPUTS = ('depth', 'normals', 'features')


class DenseOutputs(NamedTuple):
    """Image-path outputs; a field is None when its task is not enabled."""

    depth: Optional[torch.Tensor]  # (B, 1, H', W') metres; H', W' = 8h, 8w for even grids
    normals: Optional[torch.Tensor]  # (B, 3, H', W') unit vectors
    features: Optional[torch.Tensor]  # (B, h, w, D) L2-normalised value-trick features
    # (B, classes, H', W') ADE20K head logits; not part of the exported path (torch only)
    ade20k: Optional[torch.Tensor] = None


class EncoderOutputs(NamedTuple):
    """What the encoder part hands to the heads and to zero-shot segmentation."""

    intermediates: tuple[Intermediate, ...]
    features: Optional[torch.Tensor]  # (B, h, w, D) L2-normalised, or None


class DenseEncoder(nn.Module):
    """The ViT at a fixed input size: pixels -> DPT inputs and zero-shot features."""

    def __init__(self, vision: VisionTransformer, layers: Sequence[int],
                 input_size: Sequence[int], features: bool) -> None:
        super().__init__()
        self.vision = vision
        self.layers = tuple(layers)
        self.input_size = tuple(input_size)
        self.with_features = features
        # Bake the resized positional table; inference_mode(False) keeps the buffer a normal
        # tensor even when the path is built inside inference mode.
        with torch.inference_mode(False), torch.no_grad():
            table = vision.pos_embed_for(self.input_size).detach().clone()
        self.register_buffer('pos_embed', table, persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> EncoderOutputs:
        if tuple(pixel_values.shape[-2:]) != self.input_size:
            raise ValueError(f'this image path was built for {self.input_size} inputs, got '
                             f'{tuple(pixel_values.shape[-2:])}')
        dense = self.vision.dense_features(pixel_values, self.layers,
                                           values=self.with_features, pos_embed=self.pos_embed)
        features = (F.normalize(dense.value_tokens, dim=-1) if self.with_features else None)
        return EncoderOutputs(dense.intermediates, features)


class UnitNormals(nn.Module):
    """The normals head followed by the L2 normalisation of the official demo."""

    def __init__(self, head: NormalsHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, intermediates: Sequence[Intermediate]) -> torch.Tensor:
        return F.normalize(self.head(intermediates), dim=1)


class ImagePath(nn.Module):
    """Encoder plus the enabled heads; shares (does not copy) the modules it is given."""

    def __init__(self, vision: VisionTransformer, layers: Sequence[int],
                 input_size: Sequence[int], depth: Optional[DepthHead] = None,
                 normals: Optional[NormalsHead] = None, features: bool = False) -> None:
        """Assemble the path.

        Args:
            vision: the image encoder.
            layers: the intermediate layers the DPT heads read.
            input_size: (H, W), multiples of the patch size.
            depth: the depth head, or None to skip depth.
            normals: the normals head, or None to skip normals.
            features: compute the zero-shot segmentation features.
        """
        super().__init__()
        if depth is None and normals is None and not features:
            raise ValueError(f'an image path needs at least one of the tasks {TASKS}')
        # Without a DPT head the intermediates are not needed.
        layers = layers if depth is not None or normals is not None else ()
        self.encoder = DenseEncoder(vision, layers, input_size, features)
        self.depth = depth
        self.normals = UnitNormals(normals) if normals is not None else None

    @property
    def tasks(self) -> tuple[str, ...]:
        """The enabled tasks, in ``TASKS`` order."""
        enabled = (self.depth is not None, self.normals is not None,
                   self.encoder.with_features)
        return tuple(task for task, on in zip(TASKS, enabled) if on)

    def forward(self, pixel_values: torch.Tensor) -> DenseOutputs:
        """Run the image path on (B, 3, H, W) RGB in [0, 1] at the built input size."""
        encoded = self.encoder(pixel_values)
        depth = self.depth(encoded.intermediates) if self.depth is not None else None
        normals = self.normals(encoded.intermediates) if self.normals is not None else None
        return DenseOutputs(depth, normals, encoded.features)
