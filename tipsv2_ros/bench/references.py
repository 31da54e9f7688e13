# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The reference implementations the benchmark compares against, on the same weights.

transformers' ``Tipsv2DptForDensePrediction`` (a benchmark-only, optional dependency) is
given our loaded weights through the Hugging Face file layout that ``hf_checkpoint.hf_weights``
reads (the reverse mapping, then ``from_pretrained``), so both sides hold identical tensors.
It runs its backbone once and the depth and normals heads, like our image path for
{depth, normals}. Its depth decoder applies a ReLU after ``project`` by default
(``depth_decoder_activation='relu'``; the official code has none): it is built with
``'linear'`` so that both sides compute the same function, which the benchmark checks.
"""
import tempfile
from typing import Callable, Dict, NamedTuple

import torch
import torch.nn.functional as F

from tipsv2_ros.model.config import ModelConfig
from tipsv2_ros.model.hf_checkpoint import HF_VISION_RENAMES
from tipsv2_ros.model.tips import TipsV2


class Reference(NamedTuple):
    """A callable image path: (B, 3, H, W) pixels -> {'depth': (B, 1, H', W'), 'normals'}."""

    name: str
    run: Callable[[torch.Tensor], Dict[str, torch.Tensor]]
    encoder: Callable[[torch.Tensor], object]  # the backbone alone


def hf_state(model: TipsV2) -> Dict[str, torch.Tensor]:
    """Our vision encoder and DPT heads under the Hugging Face ``model.safetensors`` keys."""
    state = {}
    for key, value in model.vision.state_dict().items():
        for ours, theirs in HF_VISION_RENAMES:  # (their name, our name) pairs
            key = key.replace(theirs, ours)
        state[f'vision_encoder.{key}'] = value
    for task, head in model.heads.items():
        for key, value in head.state_dict().items():
            if key == 'bin_centers':
                continue  # not stored in released files
            if key.startswith('head.'):
                state[f'{task}_head.{task}_head.{key[5:]}'] = value
            else:
                state[f'{task}_head.{key[4:]}'] = value  # 'dpt.' dropped
    return {k: v.detach().to('cpu', torch.float32).contiguous() for k, v in state.items()}


def transformers_config(cfg: ModelConfig):
    """Return the transformers Tipsv2DptConfig of our variant (eager PyTorch, SDPA)."""
    import transformers
    vision = cfg.vision
    ratio = vision.mlp_hidden_dim / vision.embed_dim
    backbone = transformers.Tipsv2VisionConfig(
        hidden_size=vision.embed_dim, num_hidden_layers=vision.depth,
        num_attention_heads=vision.num_heads,
        mlp_ratio=int(ratio) if ratio == int(ratio) else ratio,
        image_size=vision.pos_grid * vision.patch_size, patch_size=vision.patch_size,
        num_register_tokens=vision.num_register_tokens, layer_norm_eps=vision.ln_eps,
        use_swiglu_ffn=vision.ffn == 'swiglu',
        out_indices=[layer + 1 for layer in cfg.dpt.intermediate_layers],
        apply_layernorm=True, reshape_hidden_states=False)
    return transformers.Tipsv2DptConfig(
        backbone_config=backbone, neck_hidden_sizes=list(cfg.dpt.post_process_channels),
        fusion_hidden_size=cfg.dpt.channels, num_depth_bins=cfg.dpt.depth_bins,
        min_depth=cfg.dpt.min_depth, max_depth=cfg.dpt.max_depth,
        num_labels=cfg.dpt.segmentation_classes, depth_decoder_activation='linear')


def transformers_reference(model: TipsV2, device: torch.device) -> Reference:
    """Build transformers' Tipsv2 DPT model with our weights; raise ImportError/RuntimeError."""
    import safetensors.torch
    import transformers
    transformers.logging.set_verbosity_error()
    config = transformers_config(model.config)
    with tempfile.TemporaryDirectory(prefix='tipsv2_bench_hf_') as directory:
        config.save_pretrained(directory)
        safetensors.torch.save_file(hf_state(model), f'{directory}/model.safetensors')
        dense, info = transformers.Tipsv2DptForDensePrediction.from_pretrained(
            directory, output_loading_info=True)
    wanted = ('backbone.',) + tuple(f'{task}_' for task in model.heads)
    missing = [k for k in info['missing_keys'] if k.startswith(wanted)]
    if missing or info['unexpected_keys'] or info['mismatched_keys']:
        raise RuntimeError(f'transformers did not take our weights: missing {missing[:4]}, '
                           f'unexpected {info["unexpected_keys"][:4]}, mismatched '
                           f'{info["mismatched_keys"][:4]}')
    dense = dense.to(device).eval()
    patch = model.config.vision.patch_size

    def run(pixel_values: torch.Tensor) -> Dict[str, torch.Tensor]:
        with torch.inference_mode():
            features = dense.backbone(pixel_values).feature_maps
            grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
            out = {}
            if 'depth' in model.heads:
                fused = dense.depth_neck(features, *grid)[-1]
                out['depth'] = dense.depth_bin_regressor(dense.depth_decoder(fused))[:, None]
            if 'normals' in model.heads:
                fused = dense.normals_neck(features, *grid)[-1]
                # transformers' post-processing normalises too (post_process_normal_estimation).
                out['normals'] = F.normalize(dense.normals_decoder(fused), dim=1)
        return out

    def encoder(pixel_values: torch.Tensor):
        with torch.inference_mode():
            return dense.backbone(pixel_values).feature_maps

    return Reference(f'transformers {transformers.__version__} Tipsv2DptForDensePrediction '
                     '(eager, SDPA)', run, encoder)


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max|ours - theirs| / max(1, max|theirs|): the golden tests' measure."""
    ours, theirs = ours.float().cpu(), theirs.float().cpu()
    return float((ours - theirs).abs().max() / max(1.0, float(theirs.abs().max())))
