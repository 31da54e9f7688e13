# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""What TensorRT made of an engine: layer precisions and whether attention was fused.

Engines are built with detailed profiling verbosity (``tensorrt_build``), so the engine
inspector lists every layer with its tactic and the formats of its inputs and outputs. The
summary counts layers by output precision and names the layers whose name, type or tactic
shows a fused multi-head-attention kernel (fMHA / flash attention / Myelin MHA), which
TensorRT picks only when the MatMul-Softmax-MatMul pattern shares one type.
"""
import collections
import json
import re
from typing import Dict, List, Mapping, Sequence

ATTENTION_MARKERS = ('fmha', 'mha', 'flash', 'attention', 'sdpa')
_PRECISION = re.compile(r'\b(FP32|FP16|BF16|FP8|Int8|INT8|Int32|INT32|Int64|Bool)\b')


def engine_layers(blob: bytes) -> List:
    """Return the inspector's layer list of a serialized engine (needs TensorRT and a GPU)."""
    from tipsv2_ros.runtime.backends.tensorrt.build import import_tensorrt, trt_logger
    trt = import_tensorrt()
    runtime = trt.Runtime(trt_logger())
    engine = runtime.deserialize_cuda_engine(blob)
    if engine is None:
        raise ValueError('TensorRT could not deserialize the engine')
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return list(info.get('Layers', []))


def layer_precision(layer) -> str:
    """Return the precision of a layer's first output ('FP16', 'FP32', ... or '?')."""
    if not isinstance(layer, Mapping):
        return '?'  # the engine was built without detailed verbosity: names only
    for tensor in layer.get('Outputs', []):
        found = _PRECISION.search(str(tensor.get('Format/Datatype', '')))
        if found:
            return found.group(1).upper()
    return '?'


def is_fused_attention(layer) -> bool:
    """Whether a layer's name, type or tactic shows a fused attention kernel."""
    if isinstance(layer, Mapping):
        fields = ' '.join(str(layer.get(k, '')) for k in ('Name', 'LayerType', 'TacticName'))
    else:
        fields = str(layer)
    return any(marker in fields.lower() for marker in ATTENTION_MARKERS)


def summarise(layers: Sequence) -> Dict[str, object]:
    """Count layers by output precision and list the fused-attention layers."""
    precisions = collections.Counter(layer_precision(layer) for layer in layers)
    attention = [layer.get('Name', '?') if isinstance(layer, Mapping) else str(layer)
                 for layer in layers if is_fused_attention(layer)]
    return {'layers': len(layers), 'precisions': dict(precisions),
            'fused_attention': attention}
