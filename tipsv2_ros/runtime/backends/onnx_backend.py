# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The ONNX Runtime backend: the exported parts in one session each.

CPU in CI; on a CUDA device the CUDA execution provider (and TensorRT's, where installed)
with I/O bound to torch tensors, so frames and outputs stay on the GPU. Only the parts the
asked tasks need run: the encoder always, a head only when its task is asked for.
"""
import os
from typing import Dict, FrozenSet, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnxruntime
import torch

from tipsv2_ros.runtime.backends.base import Backend, BackendError, Feeds
from tipsv2_ros.tasks import REGISTRY


def available_cores() -> int:
    """Return the CPU cores this process may use (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def has_cuda() -> bool:
    """Return whether this onnxruntime build has the CUDA execution provider."""
    return 'CUDAExecutionProvider' in onnxruntime.get_available_providers()


def export_opset(device: torch.device) -> int:
    """Return the ONNX opset to export for this onnxruntime on ``device``.

    At opset 23 ``scaled_dot_product_attention`` and GELU export as the ONNX ``Attention``
    and ``Gelu`` ops, which onnxruntime's CPU provider (1.23 and later) runs fused: the B/14
    encoder at 448 takes ~7% less time than as MatMul + Softmax + MatMul at opset 18 (the
    12 x 1026 x 1026 scores per block then live in memory). GPU providers keep opset 18,
    which every TensorRT parser behind ORT's TensorRT provider reads.
    """
    version = tuple(int(p) for p in onnxruntime.__version__.split('.')[:2] if p.isdigit())
    return 23 if device.type == 'cpu' and version >= (1, 23) else 18


def tensorrt_provider_options(inputs: Mapping[str, Sequence[int]], max_batch: int,
                              cache_dir: str, device_index: int, stream: int,
                              workspace_mb: int) -> Dict[str, object]:
    """Options of ORT's TensorRT provider for one part (fp32).

    Args:
        inputs: input name -> shape without the batch axis.
        max_batch: the profile's largest batch (optimised for 1); without explicit profile
            shapes the provider rebuilds its engine whenever a larger batch arrives.
        cache_dir: where the provider keeps its engines and timing cache (a restart loads
            them instead of building for minutes).
        device_index: the CUDA device.
        stream: the backend's CUDA stream (its address), on which the provider runs.
        workspace_mb: the builder's workspace limit.
    """
    def shapes(batch: int) -> str:
        return ','.join(f'{name}:{"x".join(str(d) for d in (batch, *shape))}'
                        for name, shape in inputs.items())
    # fp32 only: ORT's own fp16 conversion has no parity gate (backend tensorrt has one).
    return {'device_id': device_index, 'trt_fp16_enable': False,
            'trt_engine_cache_enable': True, 'trt_engine_cache_path': cache_dir,
            'trt_timing_cache_enable': True, 'trt_timing_cache_path': cache_dir,
            'trt_max_workspace_size': str(int(workspace_mb) << 20),
            'trt_profile_min_shapes': shapes(1), 'trt_profile_opt_shapes': shapes(1),
            'trt_profile_max_shapes': shapes(max_batch), 'user_compute_stream': str(int(stream))}


def part_inputs(onnx_path: os.PathLike) -> Dict[str, Tuple[int, ...]]:
    """Input name -> fixed shape without the batch axis, read from an ONNX file's header."""
    import onnx
    graph = onnx.load(os.fspath(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return {i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim[1:])
            for i in graph.input if i.name not in initializers}


def providers_for(device: torch.device, cache_dir: Optional[str] = None,
                  onnx_path: Optional[os.PathLike] = None, max_batch: int = 4,
                  stream: Optional[int] = None, workspace_mb: int = 4096) -> list:
    """Return execution providers for ``device``; raise BackendError if CUDA cannot be served.

    On CUDA, both GPU providers run on ``stream`` (default: torch's current stream); the
    TensorRT provider (where installed) gets the part's profile shapes and a cache folder.
    """
    if device.type == 'cpu':
        return ['CPUExecutionProvider']
    available = onnxruntime.get_available_providers()
    if device.type != 'cuda' or 'CUDAExecutionProvider' not in available:
        raise BackendError(f'onnxruntime {onnxruntime.__version__} has no CUDA execution '
                           f'provider for device {device} (providers: {", ".join(available)}): '
                           'pip install onnxruntime-gpu, or use device cpu or backend tensorrt')
    index = device.index if device.index is not None else torch.cuda.current_device()
    if stream is None:
        stream = torch.cuda.current_stream(index).cuda_stream
    providers = []
    if 'TensorrtExecutionProvider' in available and onnx_path is not None:
        from tipsv2_ros.runtime.export import cache
        # ORT deserializes the engines it finds there: owner-only, like the engine cache.
        folder = os.fspath(cache.secure_folder(os.path.join(
            cache_dir or os.path.dirname(os.fspath(onnx_path)), 'ort-trt')))
        providers.append(('TensorrtExecutionProvider', tensorrt_provider_options(
            part_inputs(onnx_path), max_batch, folder, index, stream, workspace_mb)))
    providers.append(('CUDAExecutionProvider', {'device_id': index,
                                                'user_compute_stream': str(stream)}))
    return providers + ['CPUExecutionProvider']


class OnnxRuntimeBackend(Backend):
    """Runs the ONNX parts of ``tipsv2_ros.runtime.export`` in onnxruntime.

    Args:
        parts: part name ('encoder', or a head's ``TaskSpec.part``) -> ONNX file.
        input_size: the (H, W) the parts were exported at.
        tasks: the tasks that may be asked for; each head's file must be in ``parts``.
        device: 'cpu', or a CUDA device (needs onnxruntime-gpu).
        threads: intra-op threads (default: every available core).
        cache_dir: where the TensorRT execution provider caches its engines.
        max_batch: the largest batch of the TensorRT provider's profiles.
        workspace_mb: the TensorRT provider's builder workspace limit.
        precision: what the files hold, 'fp32' or 'int8' (``int8_path``), for ``describe``.
        report: the int8 accuracy gate's figures, when there was a gate.
    """

    name = 'onnxruntime'

    def __init__(self, parts: Mapping[str, os.PathLike], input_size: Tuple[int, int],
                 tasks: Iterable[str], device='cpu', threads: Optional[int] = None,
                 cache_dir: Optional[str] = None, max_batch: int = 4, workspace_mb: int = 4096,
                 precision: str = 'fp32', report=None):
        super().__init__(input_size, torch.device(device), tasks)
        self.precision, self.report = precision, report
        needed = {'encoder'} | {REGISTRY[t].part for t in self.tasks if REGISTRY[t].part}
        missing = needed - set(parts)
        if missing:
            raise BackendError(f'onnxruntime backend: no ONNX file for {sorted(missing)}')
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # On CUDA, the sessions run on a stream of the backend's own (never the legacy
        # default stream), ordered after the caller's stream by an event in ``infer``.
        self.stream = torch.cuda.Stream(self.device) if self.device.type == 'cuda' else None
        try:
            self._sessions = {
                name: onnxruntime.InferenceSession(
                    os.fspath(parts[name]), options, providers=providers_for(
                        self.device, cache_dir, parts[name], max_batch,
                        self.stream.cuda_stream if self.stream is not None else None,
                        workspace_mb))
                for name in sorted(needed)}
        except Exception as error:  # onnxruntime raises its own exception types
            raise BackendError(f'onnxruntime could not load the parts: {error}') from None
        self.threads = options.intra_op_num_threads
        encoder_outputs = [o.name for o in self._sessions['encoder'].get_outputs()]
        for task in self.tasks:
            spec = REGISTRY[task]
            if not spec.part and spec.output not in encoder_outputs:
                raise BackendError(f'onnxruntime backend: the encoder file has no {spec.output} '
                                   f'output; export it with {task} enabled')

    def run_part(self, name: str, feeds: Feeds) -> Dict[str, torch.Tensor]:
        run = self._run_cpu if self.device.type == 'cpu' else self._run_cuda
        return run(name, feeds)

    def encode(self, pixel_values: torch.Tensor,
               tasks: FrozenSet[str]) -> Dict[str, torch.Tensor]:
        if self.stream is not None:  # the parts run after what the caller queued
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
        return self.run_part('encoder', {'pixel_values': pixel_values.float()})

    def _run_cpu(self, part: str, feeds: Mapping) -> Dict:
        session = self._sessions[part]
        feeds = {i.name: _numpy(feeds[i.name]) for i in session.get_inputs()}
        names = [o.name for o in session.get_outputs()]
        outputs = session.run(names, feeds)
        return {name: torch.from_numpy(array) for name, array in zip(names, outputs)}

    def _run_cuda(self, part: str, feeds: Mapping[str, torch.Tensor]) -> Dict:
        session = self._sessions[part]
        binding = session.io_binding()
        index = self.device.index if self.device.index is not None else 0
        batch = next(iter(feeds.values())).shape[0]
        keep = []  # inputs stay referenced until the run has finished
        for node in session.get_inputs():
            tensor = feeds[node.name].to(self.device, torch.float32).contiguous()
            keep.append(tensor)
            binding.bind_input(node.name, 'cuda', index, np.float32, tuple(tensor.shape),
                               tensor.data_ptr())
        outputs = {}
        for node in session.get_outputs():
            shape = (batch,) + tuple(node.shape[1:])  # fixed but for the batch
            outputs[node.name] = torch.empty(shape, dtype=torch.float32, device=self.device)
            binding.bind_output(node.name, 'cuda', index, np.float32, shape,
                                outputs[node.name].data_ptr())
        session.run_with_iobinding(binding)  # returns once the stream has run the part
        return outputs

    def describe(self) -> str:
        providers = self._sessions['encoder'].get_providers()[0].replace('ExecutionProvider', '')
        return (f'{super().describe()} ({self.precision}, {providers}, {self.threads} '
                'threads)')

    def close(self) -> None:
        self._sessions = {}


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value)
