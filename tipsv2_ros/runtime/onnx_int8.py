# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""int8 variants of the exported parts, for ONNX Runtime on CPUs with int8 dot products.

Quantisation is onnxruntime's own (``onnxruntime.quantization``), applied to the fp32 file
of a part:

- matrix products (``MatMul``/``Gemm``: the encoder's qkv, proj and MLP, the heads' readout
  and per-pixel Linear layers) are quantised dynamically: int8 weights per output channel,
  activations quantised per tensor at run time from their own range, so no calibration is
  needed and no activation range can be wrong for a frame; onnxruntime fuses them into
  ``DynamicQuantizeMatMul`` (VNNI / AMX-INT8 kernels);
- convolutions (the DPT heads) are quantised statically (QDQ, int8 weights per channel,
  uint8 activations with ranges calibrated on sample frames), which onnxruntime runs as
  ``QLinearConv``. Dynamic ``ConvInteger`` has no fast kernel.

LayerNorm, attention (the fused ``Attention`` op), GELU, resizes and the heads' final
normalisations stay fp32.
"""
import contextlib
import logging
import os
import pathlib
import tempfile
from typing import Iterable, Mapping, Optional

import numpy as np
import onnx
import onnxruntime
from onnxruntime import quantization

MATMULS = ['MatMul', 'Gemm']
CONVS = ['Conv']


def version() -> str:
    """Return the onnxruntime version: its quantiser decides the int8 graph."""
    return onnxruntime.__version__


def has_convolutions(source: os.PathLike) -> bool:
    """Whether the ONNX file has Conv nodes (the DPT heads do, the encoder's is the patchify)."""
    model = onnx.load(os.fspath(source), load_external_data=False)
    return sum(node.op_type == 'Conv' for node in model.graph.node) > 1


class _Feeds(quantization.CalibrationDataReader):
    """Hands the calibration inputs to the quantiser, one frame at a time."""

    def __init__(self, feeds: Iterable[Mapping[str, np.ndarray]]):
        self._feeds = iter(list(feeds))

    def get_next(self):
        return next(self._feeds, None)


def quantize(source: os.PathLike, target: os.PathLike,
             calibration: Optional[Iterable[Mapping[str, np.ndarray]]] = None) -> str:
    """Write the int8 variant of the fp32 part ``source`` to ``target``.

    Args:
        source: the exported fp32 part.
        target: where the int8 file goes.
        calibration: input feeds (one dict per frame) for the static convolutions; without
            them only the matrix products are quantised.

    Returns:
        How it was quantised, for the cache key and the log.
    """
    source, target = pathlib.Path(source), pathlib.Path(target)
    convolutions = calibration is not None and has_convolutions(source)
    with tempfile.TemporaryDirectory(prefix='.int8-', dir=target.parent) as scratch, \
            _quiet_quantizer():
        staged = source
        if convolutions:
            staged = pathlib.Path(scratch) / 'conv-int8.onnx'
            quantization.quantize_static(
                os.fspath(source), os.fspath(staged), _Feeds(calibration),
                quant_format=quantization.QuantFormat.QDQ, op_types_to_quantize=CONVS,
                per_channel=True, activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax,
                extra_options={'CalibTensorRangeSymmetric': False})
        quantization.quantize_dynamic(
            os.fspath(staged), os.fspath(target), op_types_to_quantize=MATMULS,
            per_channel=True, weight_type=quantization.QuantType.QInt8)
    return ('matmuls dynamic, convolutions static (calibrated)' if convolutions
            else 'matmuls dynamic')


@contextlib.contextmanager
def _quiet_quantizer():
    """Keep the quantiser's advice (pre-processing, QAT) out of the node's log."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
