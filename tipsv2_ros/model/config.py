# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Hyper-parameters of the released TIPSv2 variants.

Mirrors the constructors of tips/pytorch/image_encoder.py@4db271d (``vit_base`` ...
``vit_giant2``), tips/pytorch/text_encoder.py@4db271d (``get_config``) and the
``INTERMEDIATE_LAYERS_MAP`` of tips/pytorch/TIPS_decoder_inference.ipynb@4db271d.
"""
from dataclasses import dataclass
from typing import Mapping, Union


@dataclass(frozen=True)
class VisionConfig:
    """DINOv2-style ViT with one register token ("2nd CLS")."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden_dim: int  # fc1 width; for SwiGLU the gated width (w12 is twice that)
    ffn: str = 'mlp'  # 'mlp' (exact GELU) or 'swiglu' (g/14)
    patch_size: int = 14
    pos_grid: int = 32  # the stored positional table is pos_grid x pos_grid (448 / 14)
    num_register_tokens: int = 1
    ln_eps: float = 1e-6


@dataclass(frozen=True)
class TextConfig:
    """CLIP-style text transformer with masked mean pooling and no projection."""

    width: int
    layers: int
    heads: int
    mlp_dim: int
    vocab_size: int = 32000
    max_len: int = 64
    ln_eps: float = 1e-5  # the official PyTorch port uses the nn.LayerNorm default


DEPTH_ACTIVATIONS = ('none', 'relu')


@dataclass(frozen=True)
class DPTConfig:
    """DPT decoder shared by the depth, normals and segmentation heads."""

    intermediate_layers: tuple[int, ...]  # 0-based ViT blocks the decoder reads
    post_process_channels: tuple[int, ...]  # (D/8, D/4, D/2, D) for the released heads
    channels: int = 256
    depth_bins: int = 256
    min_depth: float = 0.001
    max_depth: float = 10.0
    segmentation_classes: int = 150  # ADE20K
    # After the depth decoder's ``project``: 'none' as the official code, or 'relu' as
    # transformers' default (``depth_decoder_activation``).
    depth_activation: str = 'none'

    def __post_init__(self) -> None:
        if self.depth_activation not in DEPTH_ACTIVATIONS:
            raise ValueError(f'dpt.depth_activation {self.depth_activation!r} must be one of '
                             f'{", ".join(DEPTH_ACTIVATIONS)}')


@dataclass(frozen=True)
class ModelConfig:
    """One TIPSv2 variant: both towers, the DPT heads and the contrastive temperature."""

    name: str
    vision: VisionConfig
    text: TextConfig
    dpt: DPTConfig
    temperature: float  # used when the text checkpoint carries none (HF config.json values)
    input_size: int = 448


def _dpt(embed_dim: int, layers: tuple[int, ...]) -> DPTConfig:
    channels = (embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim)
    return DPTConfig(intermediate_layers=layers, post_process_channels=channels)


def swiglu_hidden_dim(embed_dim: int, mlp_ratio: float) -> int:
    """Return the gated width DINOv2's ``SwiGLUFFNFused`` derives from ``mlp_ratio``."""
    return (int(int(embed_dim * mlp_ratio) * 2 / 3) + 7) // 8 * 8


VARIANTS: dict[str, ModelConfig] = {
    'b14': ModelConfig(
        'b14', VisionConfig(768, 12, 12, 3072), TextConfig(768, 12, 12, 3072),
        _dpt(768, (2, 5, 8, 11)), temperature=0.005065968260169029),
    'l14': ModelConfig(
        'l14', VisionConfig(1024, 24, 16, 4096), TextConfig(1024, 12, 16, 4096),
        _dpt(1024, (5, 11, 17, 23)), temperature=0.004785141441971064),
    'so400m14': ModelConfig(
        'so400m14', VisionConfig(1152, 27, 16, 4304), TextConfig(1152, 27, 16, 4304),
        _dpt(1152, (6, 13, 20, 26)), temperature=0.004638021811842918),
    'g14': ModelConfig(
        'g14', VisionConfig(1536, 40, 24, swiglu_hidden_dim(1536, 4), ffn='swiglu'),
        TextConfig(1536, 12, 24, 6144), _dpt(1536, (9, 19, 29, 39)),
        temperature=0.003622700460255146),
}


def config_from_dict(spec: Mapping, name: str = 'custom',
                     temperature: float = 0.005065968260169029) -> ModelConfig:
    """Build a config from a dict in the layout of the golden ``config.json``.

    Args:
        spec: ``{'vision': {...}, 'text': {...}, 'dpt': {...}}`` with the golden key names;
            optional top-level ``name`` and ``temperature`` override the arguments, and
            ``vision.mlp_hidden_dim`` the width derived from ``mlp_ratio``.
        name: the name the config reports.
        temperature: the fallback contrastive temperature (B/14's by default).

    Returns:
        The frozen config.
    """
    vis, txt, dpt = spec['vision'], spec['text'], spec['dpt']
    if not vis.get('layerscale', True):
        raise ValueError('TIPSv2 checkpoints always carry LayerScale gammas (ls1/ls2)')
    ratio = vis.get('mlp_ratio', 4)
    ffn = vis.get('ffn', 'mlp')
    hidden = vis.get('mlp_hidden_dim') or (swiglu_hidden_dim(vis['embed_dim'], ratio)
                                           if ffn == 'swiglu' else int(vis['embed_dim'] * ratio))
    vision = VisionConfig(
        embed_dim=vis['embed_dim'], depth=vis['depth'], num_heads=vis['num_heads'],
        mlp_hidden_dim=hidden, ffn=ffn, patch_size=vis.get('patch_size', 14),
        pos_grid=vis.get('pos_grid', 32),
        num_register_tokens=vis.get('num_register_tokens', 1), ln_eps=vis.get('ln_eps', 1e-6))
    text = TextConfig(
        width=txt['hidden_size'], layers=txt['num_layers'], heads=txt['num_heads'],
        mlp_dim=txt['mlp_dim'], vocab_size=txt.get('vocab_size', 32000),
        max_len=txt.get('max_len', 64), ln_eps=txt.get('ln_eps', 1e-5))
    dense = DPTConfig(
        intermediate_layers=tuple(dpt['intermediate_layers']),
        post_process_channels=tuple(dpt['post_process_channels']),
        channels=dpt.get('channels', 256), depth_bins=dpt.get('depth_bins', 256),
        min_depth=dpt.get('min_depth', 0.001), max_depth=dpt.get('max_depth', 10.0),
        segmentation_classes=dpt.get('segmentation_classes', 150),
        depth_activation=dpt.get('depth_activation', 'none'))
    input_size = vision.pos_grid * vision.patch_size
    return ModelConfig(spec.get('name', name), vision, text, dense,
                       float(spec.get('temperature', temperature)), input_size)


def config_to_dict(config: ModelConfig) -> dict:
    """Return ``config`` in the golden ``config.json`` layout (``config_from_dict`` inverts it)."""
    vis, txt, dpt = config.vision, config.text, config.dpt
    return {
        'name': config.name, 'temperature': config.temperature,
        'vision': {'embed_dim': vis.embed_dim, 'depth': vis.depth, 'num_heads': vis.num_heads,
                   'patch_size': vis.patch_size, 'pos_grid': vis.pos_grid,
                   'num_register_tokens': vis.num_register_tokens, 'ffn': vis.ffn,
                   'mlp_ratio': vis.mlp_hidden_dim / vis.embed_dim,
                   'mlp_hidden_dim': vis.mlp_hidden_dim, 'layerscale': True,
                   'ln_eps': vis.ln_eps},
        'text': {'hidden_size': txt.width, 'mlp_dim': txt.mlp_dim, 'num_heads': txt.heads,
                 'num_layers': txt.layers, 'vocab_size': txt.vocab_size,
                 'max_len': txt.max_len, 'ln_eps': txt.ln_eps},
        'dpt': {'intermediate_layers': list(dpt.intermediate_layers),
                'post_process_channels': list(dpt.post_process_channels),
                'channels': dpt.channels, 'depth_bins': dpt.depth_bins,
                'min_depth': dpt.min_depth, 'max_depth': dpt.max_depth,
                'segmentation_classes': dpt.segmentation_classes,
                'depth_activation': dpt.depth_activation},
    }


# The tiny model of the golden test data (tests/data/golden/config.json): fast enough for
# unit tests, the offline demo and the node tests with random weights.
TINY = config_from_dict({
    'vision': {'embed_dim': 64, 'depth': 4, 'num_heads': 4, 'pos_grid': 8},
    'text': {'hidden_size': 64, 'mlp_dim': 256, 'num_heads': 4, 'num_layers': 2,
             'vocab_size': 400},
    'dpt': {'intermediate_layers': [0, 1, 2, 3], 'post_process_channels': [8, 16, 32, 64],
            'channels': 32, 'segmentation_classes': 7},
}, name='tiny')


def resolve_config(variant: Union[str, ModelConfig]) -> ModelConfig:
    """Return the config for a variant name ('b14', ..., or 'tiny') or pass a config through."""
    if isinstance(variant, ModelConfig):
        return variant
    known = {**VARIANTS, TINY.name: TINY}
    if variant not in known:
        raise ValueError(f'unknown TIPSv2 variant {variant!r}; known: {sorted(known)}')
    return known[variant]
