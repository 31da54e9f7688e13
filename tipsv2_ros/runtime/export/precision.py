# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Mixed-precision variants of an exported part, for TensorRT engines.

Strongly typed TensorRT networks (TensorRT >= 10.12, and all of TensorRT 11, which dropped
the FP16 builder flag) run every tensor in the type the ONNX graph gives it, so reduced
precision is written into the graph: nodes get a compute type, Casts are inserted where
types meet, and weights read only by reduced-precision nodes are stored in that type.
Graph inputs and outputs stay float32. For weakly typed builds the same policy is handed to
the builder as a set of node names to pin to fp32 (``fp32_nodes``).

Policies (``PRECISIONS``):
  fp16: everything in fp16 except the layers known to overflow or lose accuracy in fp16
    (LayerNormalization, reductions, roots, exponentials, Einsum), the expectations (below)
    and every node after the last matmul/convolution on its path to an output (the final
    normalisations). Softmax and GELU's cube stay in fp16 between their fp16 matmuls: TensorRT
    fuses attention (MatMul-Softmax-MatMul) only when the three share a type, and fp32 pins
    there only add casts; the parity gate decides, and fp16-safe is the fallback.
  fp16-safe: only matmuls and convolutions with a weight operand in fp16; all else fp32.

Expectations: a MatMul of an activation's output (a distribution) against a constant of few
columns and many rows (the depth head's ``weights @ [centers, 1]`` over 256 bins) is a
weighted sum, not a projection: its sums
reach 256 x 10 m x the largest weight and overflow fp16 (the engine then fails the gate and
falls back to fp32, P4 ~ 0.9 instead of ~ 0.25). It and everything from the last projection
to it stay fp32 in every level.
"""
import os
from typing import Dict, Set

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

PRECISIONS = ('fp16', 'fp16-safe')
HEAVY = frozenset({'MatMul', 'Gemm', 'Conv', 'ConvTranspose'})
KEEP_FP32 = frozenset({'LayerNormalization', 'LogSoftmax', 'ReduceMean', 'ReduceSum',
                       'ReduceL2', 'ReduceSumSquare', 'ReduceLogSumExp', 'Sqrt', 'Reciprocal',
                       'Einsum', 'Exp', 'Log'})
# A constant operand at most this wide and at least this tall makes a MatMul an expectation.
EXPECTATION_COLUMNS = 4
EXPECTATION_ROWS = 16
# Ops that move or select data: they keep the type of their first float input (no Casts).
PASSTHROUGH = frozenset({'Reshape', 'Transpose', 'Slice', 'Squeeze', 'Unsqueeze', 'Gather',
                         'Expand', 'Concat', 'Split', 'Identity', 'Flatten', 'Tile',
                         'Constant', 'Pad'})
# Ops whose float output type is fixed by an attribute or that accept any input type.
TYPE_FREE = frozenset({'Shape', 'Size', 'Cast', 'CastLike', 'ConstantOfShape'})
# Inputs with a fixed float32 type whatever the data type (Resize's roi and scales).
FIXED_INPUTS = {'Resize': {1, 2}, 'Upsample': {1}}
_FLOAT = TensorProto.FLOAT
_PROTO_LIMIT = 2_000_000_000


def _check(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f'precision {precision!r}: expected one of {PRECISIONS}')


def _producers_consumers(graph: onnx.GraphProto):
    consumers: Dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _constant_shapes(graph: onnx.GraphProto) -> Dict[str, tuple]:
    """Shapes of the initializers and Constant outputs."""
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == 'Constant':
            for attribute in node.attribute:
                if attribute.name == 'value':
                    shapes[node.output[0]] = tuple(attribute.t.dims)
    return shapes


def expectations(graph: onnx.GraphProto) -> Set[str]:
    """Return the MatMuls that are weighted sums over a distribution (see the module doc)."""
    shapes = _constant_shapes(graph)
    producers = {o: n for n in graph.node for o in n.output}
    found = set()
    for node in graph.node:
        shape = shapes.get(node.input[1]) if node.op_type == 'MatMul' else None
        if not (shape and len(shape) == 2 and shape[1] <= EXPECTATION_COLUMNS
                and shape[0] >= EXPECTATION_ROWS):
            continue
        # Applied to a computed distribution (an activation's output), not to features
        # moved in place: the normals head's 3-wide projection of transposed features is a
        # projection.
        source = producers.get(node.input[0])
        if source is not None and source.op_type not in PASSTHROUGH | HEAVY | TYPE_FREE:
            found.add(node.name)
    return found


def _feeds_heavy(graph: onnx.GraphProto, sums: Set[str] = frozenset()) -> Set[str]:
    """Return the nodes with a matmul or convolution downstream (reverse topological pass).

    Expectations (``sums``) count as reductions, not as matmuls.
    """
    consumers = _producers_consumers(graph)
    upstream: Set[str] = set()
    for node in reversed(graph.node):
        for output in node.output:
            if any((c.op_type in HEAVY and c.name not in sums) or c.name in upstream
                   for c in consumers.get(output, ())):
                upstream.add(node.name)
                break
    return upstream


def compute_types(model: onnx.ModelProto, precision: str) -> Dict[str, str]:
    """Return node name -> 'reduced', 'fp32' or 'follow' (takes its input's type)."""
    _check(precision)
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == 'Constant' for o in n.output}
    sums = expectations(graph)
    upstream = _feeds_heavy(graph, sums)
    types = {}
    for node in graph.node:
        if node.op_type in TYPE_FREE or node.op_type in PASSTHROUGH:
            types[node.name] = 'follow'
        elif node.name in sums:
            types[node.name] = 'fp32'
        elif precision == 'fp16-safe':
            weighted = node.op_type in HEAVY and len(node.input) > 1 and (
                node.input[1] in constants)
            types[node.name] = 'reduced' if weighted else 'fp32'
        elif node.op_type in KEEP_FP32 or (node.op_type not in HEAVY
                                           and node.name not in upstream):
            types[node.name] = 'fp32'
        else:
            types[node.name] = 'reduced'
    return types


def fp32_nodes(model: onnx.ModelProto, precision: str) -> Set[str]:
    """Return the nodes (by name) a weakly typed build must pin to fp32 for ``precision``."""
    return {name for name, kind in compute_types(model, precision).items() if kind == 'fp32'}


def to_mixed_precision(model: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """Rewrite ``model`` (in place) so that its nodes compute in the types of ``precision``.

    Returns:
        The rewritten model (shape-inferred and checked when under protobuf's 2 GB).
    """
    _check(precision)
    model = _named(model)
    # Protobuf cannot hold 2 GB: big graphs keep the value types the exporter recorded.
    small = model.ByteSize() < _PROTO_LIMIT
    if small:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = model.graph
    reduced = TensorProto.FLOAT16
    elem = {v.name: v.type.tensor_type.elem_type
            for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    initializers = {i.name: i for i in graph.initializer}
    elem.update({name: i.data_type for name, i in initializers.items()})
    types = compute_types(model, precision)
    readers = _producers_consumers(graph)
    converted: Dict[tuple, str] = {}
    nodes = []

    def as_type(name: str, target: int) -> str:
        if elem.get(name) == target or (name, target) in converted:
            return converted.get((name, target), name)
        new = f'{name}__{TensorProto.DataType.Name(target).lower()}'
        source = initializers.get(name)
        if source is not None and all(types.get(r.name) != 'fp32' for r in readers[name]):
            array = numpy_helper.to_array(source)
            graph.initializer.append(numpy_helper.from_array(array.astype(np.float16), new))
        else:
            nodes.append(helper.make_node('Cast', [name], [new], to=target, name=f'cast_{new}'))
        elem[new] = target
        converted[(name, target)] = new
        return new

    for node in graph.node:
        kind = types[node.name]
        floats = [i for i, name in enumerate(node.input)
                  if name and elem.get(name) in (_FLOAT, reduced)
                  and i not in FIXED_INPUTS.get(node.op_type, ())]
        target = None  # Shape, Cast, Constant...: outputs keep their declared types
        if kind == 'follow' and node.op_type not in TYPE_FREE and floats:
            target = elem[node.input[floats[0]]]
        elif kind in ('reduced', 'fp32'):
            target = reduced if kind == 'reduced' else _FLOAT
        if target is not None:
            for i in floats:
                node.input[i] = as_type(node.input[i], target)
            for output in node.output:
                if elem.get(output) in (_FLOAT, reduced):
                    elem[output] = target
        elif node.op_type == 'CastLike':
            elem[node.output[0]] = elem.get(node.input[1])
        nodes.append(node)  # after the Casts it reads: the order stays topological
    # Every graph output leaves in float32, whatever its producer computed in.
    for output in graph.output:
        if elem.get(output.name) == reduced:
            inner = f'{output.name}__reduced'
            for node in nodes:
                node.output[:] = [inner if o == output.name else o for o in node.output]
                node.input[:] = [inner if i == output.name else i for i in node.input]
            nodes.append(helper.make_node('Cast', [inner], [output.name], to=_FLOAT,
                                          name=f'cast_{output.name}_fp32'))
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)
    for value in graph.value_info:
        if value.name in elem and value.type.tensor_type.elem_type in (_FLOAT, reduced):
            value.type.tensor_type.elem_type = elem[value.name]
    if not small:
        return model
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def write_mixed(source: os.PathLike, precision: str, target: os.PathLike) -> None:
    """Write the ``precision`` variant of the ONNX file ``source`` to ``target``."""
    model = to_mixed_precision(onnx.load(os.fspath(source)), precision)
    large = model.ByteSize() >= _PROTO_LIMIT
    onnx.save(model, os.fspath(target), save_as_external_data=large,
              location=os.path.basename(target) + '.data' if large else None)


def fp32_nodes_of(source: os.PathLike, precision: str) -> Set[str]:
    """``fp32_nodes`` of an ONNX file (its weights are not loaded)."""
    return fp32_nodes(onnx.load(os.fspath(source), load_external_data=False), precision)


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give unnamed nodes unique names (the policy is keyed by name)."""
    seen = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f'{node.op_type}_{index}'
        seen.add(node.name)
    return model


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
