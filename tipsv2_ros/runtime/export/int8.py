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

On x86 CPUs without VNNI (e.g. AVX2 only), whose int8 products add pairs in int16
(``cpu.int8_products_saturate``), the weights are quantised to 7 bits (``reduce_range``),
which keeps every pair sum in range: with 8 bits the tiny model's depth came out 49 % off
on such a CPU.
"""
import contextlib
import logging
import os
import pathlib
import tempfile
from typing import Iterable, Mapping, Optional

import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime
from onnxruntime import quantization

from tipsv2_ros.runtime.cpu import int8_products_saturate

# Names the recipe below in the cache key: a changed recipe re-quantises cached parts.
RECIPE = 'fold-transposes; matmul dynamic s8 per-channel; conv qdq u8/s8 per-channel minmax'
MATMULS = ['MatMul', 'Gemm']
_PROTO_LIMIT = 1_500_000_000  # bytes of weights above which files keep them external
CONVS = ['Conv']


def version() -> str:
    """Return the onnxruntime version: its quantiser decides the int8 graph."""
    return onnxruntime.__version__


def recipe() -> str:
    """Return the quantisation recipe on this CPU, for the cache key and the log."""
    return RECIPE + ('; 7-bit weights (no VNNI)' if int8_products_saturate() else '')


def has_convolutions(source: os.PathLike) -> bool:
    """Whether the ONNX file has Conv nodes (the DPT heads do, the encoder's is the patchify)."""
    model = onnx.load(os.fspath(source), load_external_data=False)
    return sum(node.op_type == 'Conv' for node in model.graph.node) > 1


def fold_weight_transposes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Store transposed weights as weights, so that the quantiser sees their MatMuls.

    The exporter keeps ``Transpose(W)`` as a node where a weight is used twice (the last
    block's qkv, MLP and projection serve the plain and the value pass; the patch
    embedding): the quantiser only quantises a MatMul whose weight is an initializer.
    """
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    kept = []
    for node in graph.node:
        if node.op_type == 'Transpose' and node.input[0] in weights:
            array = numpy_helper.to_array(weights[node.input[0]])
            perm = next((list(a.ints) for a in node.attribute if a.name == 'perm'), None)
            folded = np.ascontiguousarray(np.transpose(array, perm))
            graph.initializer.append(numpy_helper.from_array(folded, node.output[0]))
            readers[node.input[0]] -= 1
            continue
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    unused = [i for i in graph.initializer if readers.get(i.name, 1) == 0]
    for initializer in unused:
        graph.initializer.remove(initializer)
    return model


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
    seven_bits = int8_products_saturate()
    with tempfile.TemporaryDirectory(prefix='.int8-', dir=target.parent) as scratch, \
            _quiet_quantizer():
        model = onnx.load(os.fspath(source))
        large = sum(len(i.raw_data) for i in model.graph.initializer) > _PROTO_LIMIT
        staged = pathlib.Path(scratch) / 'folded.onnx'
        onnx.save(fold_weight_transposes(model), os.fspath(staged),
                  save_as_external_data=large)
        del model
        if convolutions:
            calibrated = pathlib.Path(scratch) / 'conv-int8.onnx'
            quantization.quantize_static(
                os.fspath(staged), os.fspath(calibrated), _Feeds(calibration),
                quant_format=quantization.QuantFormat.QDQ, op_types_to_quantize=CONVS,
                per_channel=True, activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8, reduce_range=seven_bits,
                calibrate_method=quantization.CalibrationMethod.MinMax,
                use_external_data_format=large,
                extra_options={'CalibTensorRangeSymmetric': False})
            staged = calibrated
        quantization.quantize_dynamic(
            os.fspath(staged), os.fspath(target), op_types_to_quantize=MATMULS,
            per_channel=True, weight_type=quantization.QuantType.QInt8,
            reduce_range=seven_bits, use_external_data_format=large)
    how = ('matmuls dynamic, convolutions static (calibrated)' if convolutions
           else 'matmuls dynamic')
    return how + (', 7-bit weights: no VNNI' if seven_bits else '')


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
