# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The image path every backend runs: pixels -> depth, unit normals, zero-shot features.

Mirrors the inference recipes of tips/pytorch/TIPS_decoder_inference.ipynb@4db271d (DPT
heads on normed intermediate layers, normals L2-normalised) and
tips/pytorch/TIPS_zeroshot_segmentation.ipynb@4db271d (value-trick features), fused so the
ViT blocks run once per image. The input size is fixed when the path is built: the resized
positional table is computed then (with antialiasing, which ONNX cannot express) and stored
as a buffer, so the module exports with ``torch.onnx.export(..., dynamo=True)``.

Backends that run heads lazily use the parts: ``encoder`` (pixels -> ``EncoderOutputs``)
and one module per dense head of ``tipsv2_ros.tasks.REGISTRY`` (intermediates -> map), an
attribute named after its task (``path.depth``, ``path.normals``).
"""
from typing import Mapping, NamedTuple, Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F
from torch.utils import _pytree as pytree

from tipsv2_ros.model.vision import Intermediate, VisionTransformer
from tipsv2_ros.tasks import DENSE_HEAD, REGISTRY, ZERO_SHOT


class DenseOutputs(dict):
    """Image-path outputs by name (``TaskSpec.output``); only the tasks run are present.

    Built by name (``DenseOutputs(depth=d, features=f)``); ``outputs.depth`` reads like a
    field and is None for a known output that was not computed. Built-in outputs:
    ``depth`` (B, 1, H', W') metres, H', W' = 8h, 8w for even grids; ``normals``
    (B, 3, H', W') unit vectors; ``features`` (B, h, w, D) L2-normalised value-trick
    features of the zero-shot segmentation; ``ade20k`` (B, 150, H', W') ADE20K head logits
    (PyTorch only: not in the exported path).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in [name for name, value in self.items() if value is None]:
            del self[name]  # "not run" has one spelling: absent

    def __getattr__(self, name: str) -> Optional[torch.Tensor]:
        if name in self:
            return self[name]
        if name in {spec.output for spec in REGISTRY}:
            return None
        raise AttributeError(f'DenseOutputs has no output {name!r}')


# torch.export and the ONNX exporter flatten module outputs as pytrees: keys in order.
pytree.register_pytree_node(
    DenseOutputs, lambda d: (list(d.values()), list(d.keys())),
    lambda values, keys: DenseOutputs(zip(keys, values)),
    serialized_type_name='tipsv2_ros.model.image_path.DenseOutputs',
    flatten_with_keys_fn=lambda d: ([(pytree.MappingKey(k), v) for k, v in d.items()],
                                    list(d.keys())))


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


class UnitVectors(nn.Module):
    """A head followed by the L2 normalisation over channels (normals, as the official demo)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, intermediates: Sequence[Intermediate]) -> torch.Tensor:
        return F.normalize(self.head(intermediates), dim=1)


class ImagePath(nn.Module):
    """Encoder plus the enabled heads; shares (does not copy) the modules it is given."""

    def __init__(self, vision: VisionTransformer, layers: Sequence[int],
                 input_size: Sequence[int], heads: Optional[Mapping[str, nn.Module]] = None,
                 features: bool = False) -> None:
        """Assemble the path.

        Args:
            vision: the image encoder.
            layers: the intermediate layers the DPT heads read.
            input_size: (H, W), multiples of the patch size.
            heads: task -> DPT head, for the dense-head tasks to run.
            features: compute the zero-shot segmentation features.
        """
        super().__init__()
        heads = dict(heads or {})
        if not heads and not features:
            raise ValueError('an image path needs at least one of the tasks '
                             f'{REGISTRY.image_path()}')
        # Without a DPT head the intermediates are not needed.
        self.encoder = DenseEncoder(vision, layers if heads else (), input_size, features)
        self.head_names = tuple(spec.name for spec in REGISTRY.heads() if spec.image_path)
        for name in self.head_names:  # path.depth, path.normals: None when not enabled
            head = heads.pop(name, None)
            if head is not None and REGISTRY[name].unit_vectors:
                head = UnitVectors(head)
            self.add_module(name, head)
        if heads:
            raise ValueError(f'not dense heads of the image path: {sorted(heads)}')

    @property
    def tasks(self) -> tuple[str, ...]:
        """The enabled tasks, in registry order."""
        return tuple(spec.name for spec in REGISTRY if spec.image_path and (
            (spec.kind == ZERO_SHOT and self.encoder.with_features)
            or (spec.kind == DENSE_HEAD and getattr(self, spec.name, None) is not None)))

    def forward(self, pixel_values: torch.Tensor) -> DenseOutputs:
        """Run the image path on (B, 3, H, W) RGB in [0, 1] at the built input size."""
        encoded = self.encoder(pixel_values)
        outputs = {}
        for spec in REGISTRY:
            if spec.kind == DENSE_HEAD and getattr(self, spec.name, None) is not None:
                outputs[spec.output] = getattr(self, spec.name)(encoded.intermediates)
            elif spec.kind == ZERO_SHOT and encoded.features is not None:
                outputs[spec.output] = encoded.features
        return DenseOutputs(outputs)
