# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``TipsV2``: the two towers, the dense heads, the tokenizer and the temperature in one place.

Mirrors how tips/pytorch/run_image_encoder_inference.py, run_text_encoder_inference.py and
the notebooks TIPS_Demo, TIPS_decoder_inference and TIPS_zeroshot_segmentation (all @4db271d)
load and use the released files.
"""
import dataclasses
import os
from typing import Iterable, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from tipsv2_ros.model import checkpoint, config_file, dpt_checkpoint, hf_checkpoint
from tipsv2_ros.model.config import ModelConfig, resolve_config
from tipsv2_ros.model.dpt import DenseHead
from tipsv2_ros.model.image_path import ImagePath
from tipsv2_ros.model.text import TextEncoder
from tipsv2_ros.model.tokenizer import Tokenizer
from tipsv2_ros.model.vision import ImageTokens, VisionTransformer
from tipsv2_ros.model.zero_shot import TEMPLATES, text_classifier
from tipsv2_ros.tasks import DENSE_HEAD, REGISTRY, ZERO_SHOT

PathLike = Union[str, os.PathLike]
TEXT_DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}


class TipsV2(nn.Module):
    """A loaded TIPSv2 model for inference; build it with ``TipsV2.from_files``.

    The ``encode_*`` methods and ``text_classifier`` run without autograd; use the modules
    (``vision``, ``text``, ``heads``) directly to fine-tune.
    """

    def __init__(self, config: ModelConfig, vision: VisionTransformer,
                 text: Optional[TextEncoder] = None, tokenizer: Optional[Tokenizer] = None,
                 heads: Optional[Mapping[str, DenseHead]] = None,
                 temperature: Optional[float] = None) -> None:
        super().__init__()
        self.config = config
        self.vision = vision
        self.text = text
        self.tokenizer = tokenizer
        self.heads = nn.ModuleDict(dict(heads or {}))
        self._temperature = config.temperature if temperature is None else float(temperature)

    @classmethod
    def from_files(cls, vision_weights: PathLike, text_weights: Optional[PathLike] = None,
                   tokenizer: Optional[PathLike] = None,
                   variant: Union[str, ModelConfig, None] = None,
                   **head_files: Optional[PathLike]) -> 'TipsV2':
        """Load released files; every part is checked strictly against the variant.

        Args:
            vision_weights: ``tips_v2_oss_*_vision.npz`` or an HF ``model.safetensors`` (whose
                text tower is used too when ``text_weights`` is omitted).
            text_weights: ``tips_v2_oss_*_text.npz`` or an HF ``model.safetensors``.
            tokenizer: ``tokenizer.model``; needed to encode text.
            variant: 'b14', 'l14', 'so400m14', 'g14', 'tiny' or a ``ModelConfig``; when
                omitted, the ``config.json`` next to the vision weights (``config_file``),
                else the official variant their shapes match. Checked against the files.
            **head_files: a DPT head's file by its role in ``tipsv2_ros.tasks.REGISTRY``:
                ``depth_head=``, ``normals_head=`` (``tips_v2_*_{task}_dpt.zip`` from Scenic
                or an HF ``-dpt`` safetensors), ``segmentation_head=`` (the ADE20K head).

        Returns:
            The model in eval mode, on the CPU, in float32.
        """
        read = _Reader()
        hf_parts = read.hf(vision_weights)
        vision_state = hf_parts.vision if hf_parts else checkpoint.to_tensors(
            checkpoint.read_arrays(vision_weights))
        config = _check_variant(variant, vision_state, vision_weights)
        vision = VisionTransformer(config.vision)
        checkpoint.load_strict(vision, vision_state, f'{vision_weights} (vision)', 'vision',
                               config.name)
        text, temperature = None, None
        if text_weights is not None or (hf_parts and hf_parts.text):
            text_path = text_weights if text_weights is not None else vision_weights
            text_state, temperature = read.text(text_path)
            text = TextEncoder(config.text)
            checkpoint.load_strict(text, text_state, f'{text_path} (text)', 'text', config.name)
        tokens = None
        if tokenizer is not None:
            try:
                tokens = Tokenizer(tokenizer, config.text.max_len)
            except (OSError, RuntimeError) as exc:
                raise checkpoint.CheckpointError(
                    f'{tokenizer}: not a SentencePiece model ({exc})') from exc
            if tokens.vocab_size > config.text.vocab_size:
                raise checkpoint.CheckpointError(
                    f"{tokenizer}: {tokens.vocab_size} pieces do not fit the text encoder's "
                    f'{config.text.vocab_size}-entry embedding')
        roles = {spec.files[0]: spec for spec in REGISTRY.heads()}
        unknown = sorted(set(head_files) - set(roles))
        if unknown:
            raise TypeError(f'from_files() got unknown head file(s) {unknown}; heads: '
                            f'{sorted(roles)}')
        depth_head = head_files.get('depth_head')
        activation = hf_checkpoint.hf_depth_activation(depth_head) if (
            depth_head is not None and read.hf(depth_head) is not None) else None
        if activation is not None:  # as the HF config next to the HF depth head says
            config = dataclasses.replace(config, dpt=dataclasses.replace(
                config.dpt, depth_activation=activation))
        heads = {}
        for role, path in head_files.items():
            if path is not None:
                spec = roles[role]
                heads[spec.name] = spec.head_class()(config.vision.embed_dim, config.dpt)
                checkpoint.load_strict(heads[spec.name], read.head(path, spec),
                                       f'{path} ({spec.name} head)', 'dpt', config.name)
        model = cls(config, vision, text, tokens, heads, temperature)
        return model.eval()

    @property
    def temperature(self) -> float:
        """The contrastive temperature: logits are ``cosine / temperature``."""
        return self._temperature

    def describe(self) -> str:
        """Summarise what is loaded, e.g. 'TIPSv2 b14 (vision, text, heads: depth, normals)'."""
        parts = ['vision'] + (['text'] if self.text is not None else [])
        heads = f', heads: {", ".join(self.heads)}' if len(self.heads) else ''
        return f'TIPSv2 {self.config.name} ({", ".join(parts)}{heads})'

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.vision.pos_embed.device

    @torch.no_grad()
    def encode_image(self, pixel_values: torch.Tensor) -> ImageTokens:
        """Final-normed tokens of (B, 3, H, W) RGB in [0, 1], H and W multiples of 14."""
        return self.vision.encode(pixel_values)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 512) -> torch.Tensor:
        """Return raw (unnormalised) text embeddings, (N, D) float32.

        All texts go through the encoder as one batch (``batch_size`` at a time), padded only
        to the longest text of the batch: padding changes no embedding, and prompts are ~10
        of the 64 positions.
        """
        if self.text is None or self.tokenizer is None:
            raise RuntimeError('encode_text() needs text weights and a tokenizer')
        ids, paddings = self.tokenizer.tokenize(list(texts))
        # The text tower's device: the image tower leaves the GPU under engines.
        device = next(self.text.parameters()).device
        chunks = [self.text(*(part.to(device) for part in _trim_padding(
            ids[i:i + batch_size], paddings[i:i + batch_size])))
            for i in range(0, len(ids), batch_size)]
        return torch.cat(chunks)

    @property
    def text_precision(self) -> str:
        """'fp32' or 'bf16': the dtype the text encoder runs in (``set_text_precision``)."""
        if self.text is None:
            return 'fp32'
        return 'bf16' if self.text.ln_final.weight.dtype == torch.bfloat16 else 'fp32'

    def set_text_precision(self, precision: str) -> None:
        """Run the text encoder in 'fp32' (the reference) or 'bf16' (weights converted).

        bf16 needs a CPU with native bf16 matrix units (AVX512-BF16/AMX) or a GPU to be
        faster; the embeddings then differ from fp32 by ~0.5% (cosine >= 0.9999). The
        conversion is in place: going back to fp32 does not restore the dropped bits.
        """
        if precision not in TEXT_DTYPES:
            raise ValueError(f'text precision {precision!r}: expected one of '
                             f'{sorted(TEXT_DTYPES)}')
        if self.text is not None:
            self.text.to(TEXT_DTYPES[precision])

    def text_classifier(self, labels: Sequence[str],
                        templates: Sequence[str] = TEMPLATES) -> torch.Tensor:
        """Return unit (C, D) class embeddings: a prompt ensemble over ``templates`` per label."""
        return text_classifier(self.encode_text, labels, templates)

    def image_path(self, tasks: Optional[Iterable[str]] = None,
                   input_size: Union[int, Sequence[int], None] = None) -> ImagePath:
        """Build the fused image path for ``tasks`` at a fixed (H, W) input size.

        Args:
            tasks: a subset of the registry's image-path tasks (default: all of them):
                dense heads, and 'segmentation', the zero-shot features.
            input_size: H = W, or (H, W); multiples of 14. Defaults to 448.
        """
        known = REGISTRY.image_path()
        tasks = set(known if tasks is None else tasks)
        if not tasks or not tasks <= set(known):
            raise ValueError(f'tasks must be a non-empty subset of {known}, got {sorted(tasks)}')
        dense = [name for name in REGISTRY.ordered(tasks) if REGISTRY[name].kind == DENSE_HEAD]
        for task in dense:
            if task not in self.heads:
                raise RuntimeError(f'task {task!r} needs the {task} head weights')
        size = input_size or self.config.input_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        patch = self.config.vision.patch_size
        if len(size) != 2 or size[0] % patch or size[1] % patch or min(size) <= 0:
            raise ValueError(f'input size {size} must be two positive multiples of {patch}')
        path = ImagePath(self.vision, self.config.dpt.intermediate_layers, size,
                         heads={task: self.heads[task] for task in dense},
                         features=any(REGISTRY[t].kind == ZERO_SHOT for t in tasks))
        return path.to(self.device).train(self.training)


class _Reader:
    """Reads each file once, although one HF file may hold several parts."""

    def __init__(self) -> None:
        self._hf: dict[str, hf_checkpoint.HFWeights] = {}

    def hf(self, path: PathLike) -> Optional[hf_checkpoint.HFWeights]:
        """Return the parts of an HF ``.safetensors`` file, or None for another format."""
        key = os.fspath(path)
        if not key.endswith('.safetensors'):
            return None
        if key not in self._hf:
            self._hf[key] = hf_checkpoint.hf_weights(checkpoint.read_arrays(path))
        return self._hf[key]

    def text(self, path: PathLike) -> tuple[dict, Optional[float]]:
        """Return the text state dict and the temperature (None when the file has none)."""
        parts = self.hf(path)
        if parts is not None:
            return parts.text, parts.temperature
        arrays, temperature = checkpoint.split_temperature(checkpoint.read_arrays(path))
        return checkpoint.to_tensors(arrays), temperature

    def head(self, path: PathLike, spec) -> dict:
        """Return the state dict of the ``spec`` head in a Scenic zip or an HF file.

        The files name heads by ``spec.checkpoint_name`` (the ADE20K head is 'segmentation').
        """
        name, parts = spec.checkpoint_name, self.hf(path)
        if parts is not None:
            if name not in parts.heads:
                raise checkpoint.CheckpointError(
                    f'{path} has no {name} head (it has: {sorted(parts.heads) or "none"})')
            return parts.heads[name]
        return dpt_checkpoint.dpt_head_state(checkpoint.read_arrays(path), name, str(path))


def _trim_padding(ids: torch.Tensor, paddings: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the trailing positions that are padding in every text of the batch.

    Padded positions are masked as attention keys and left out of the pooling, and the
    positional sinusoids are absolute, so these columns change no output; prompts are ~10
    tokens of the 64, and dropping them makes label changes several times cheaper.
    """
    used = torch.nonzero((paddings == 0).any(dim=0))
    length = int(used.max()) + 1 if len(used) else ids.shape[1]
    return ids[:, :length], paddings[:, :length]


def _check_variant(variant: Union[str, ModelConfig, None], vision_state: Mapping,
                   path: PathLike) -> ModelConfig:
    if not vision_state:
        raise checkpoint.CheckpointError(f'{path} holds no vision encoder weights')
    inferred = checkpoint.infer_variant(vision_state, 'vision')
    width, depth = checkpoint.signature(vision_state, 'vision')
    if variant is None:
        try:  # a config.json next to the weights describes them (heads are not in shapes)
            described = config_file.find_config(path)
        except ValueError as error:
            raise checkpoint.CheckpointError(str(error)) from None
        if described is not None:
            return described
        if inferred is None:
            raise checkpoint.CheckpointError(
                f'{path}: width {width} with {depth} blocks matches no official variant; give '
                f'the model config (a {config_file.CONFIG_FILE} in the layout of the golden '
                'one) with --config or model.config, or put it next to the weights')
        return resolve_config(inferred)
    config = resolve_config(variant)
    if isinstance(variant, str) and inferred is not None and inferred != config.name:
        raise checkpoint.CheckpointError(
            f"{path}: variant {config.name!r} was requested but the file's shapes (width "
            f'{width}, {depth} blocks) are those of {inferred!r}')
    return config
