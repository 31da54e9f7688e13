# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""One deserialized TensorRT engine, run on PyTorch's current CUDA stream.

Inputs and outputs are torch tensors: outputs are allocated by torch (its caching allocator
owns the memory), bound with ``set_tensor_address`` (256-byte aligned, return values
checked: ``cuda_buffers``), and the engine is enqueued with ``execute_async_v3`` on
``torch.cuda.current_stream()``, so the results can go straight into torch post-processing
without a copy or a synchronisation. ``TensorRTBackend`` makes its own stream current for
that (never the legacy default stream, where TensorRT adds synchronisations).

The context is created without activation memory when TensorRT allows it (10.x:
``ExecutionContextAllocationStrategy.USER_MANAGED``); the backend then gives the engines of
the encoder and the heads one shared block (``cuda_buffers.SharedActivations``).
"""
from typing import Dict, Mapping

import torch

from tipsv2_ros.runtime.backends.base import BackendError
from tipsv2_ros.runtime.backends.tensorrt import cuda_buffers
from tipsv2_ros.runtime.backends.tensorrt.build import import_tensorrt, trt_logger


class EngineLoadError(BackendError):
    """A serialized engine could not be deserialized (corrupt, or built elsewhere)."""


class EngineMemoryError(BackendError):
    """The engine loaded, but no execution context fits in GPU memory (rebuilding won't help)."""


def torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int8: torch.int8, trt.bool: torch.bool}
    for name, torch_type in (('int64', torch.int64), ('bfloat16', torch.bfloat16)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = torch_type
    if dtype not in table:
        raise BackendError(f'TensorRT tensor type {dtype} has no torch equivalent')
    return table[dtype]


class Engine:
    """Callable: ``engine({input name: tensor}) -> {output name: tensor}`` on ``device``.

    Args:
        blob: the serialized engine.
        device: the CUDA device it runs on.
    """

    def __init__(self, blob: bytes, device: torch.device):
        trt = import_tensorrt()
        self.device = torch.device(device)
        self._runtime = trt.Runtime(trt_logger())  # must outlive the engine
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise EngineLoadError(f'TensorRT {trt.__version__} could not deserialize the '
                                  'engine (corrupt, or built by another version or GPU)')
        self.activation_bytes = 0
        self._activations_set = True
        with torch.cuda.device(self.device):
            self.context = self._create_context(trt)
        if self.context is None:
            free, total = torch.cuda.mem_get_info(self.device)
            raise EngineMemoryError(
                'TensorRT could not create an execution context: GPU memory '
                f'({free / 2**20:.0f} MiB free of {total / 2**20:.0f} MiB); lower '
                'tensorrt.max_batch, model.input_size, or stop other GPU processes')
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names
                       if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        # The optimisation profile's largest batch ([min, opt, max] shapes of profile 0).
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.inputs[0], 0)[2][0])

    def _create_context(self, trt):
        """Create a context without its own activation memory where the API allows it."""
        strategy = getattr(trt, 'ExecutionContextAllocationStrategy', None)
        if strategy is None:  # before TensorRT 10: the context allocates its own
            return self.engine.create_execution_context()
        context = self.engine.create_execution_context(strategy.USER_MANAGED)
        if context is not None:
            size = getattr(self.engine, 'device_memory_size_v2', None)
            self.activation_bytes = int(size if size is not None
                                        else self.engine.device_memory_size)
            self._activations_set = False
        return context

    def use_activation_memory(self, address: int, size: int) -> None:
        """Give the context ``size`` bytes at ``address`` (256-aligned) for its activations."""
        if size < self.activation_bytes or not cuda_buffers.is_aligned(address):
            raise BackendError(f'activation memory {address:#x} ({size} bytes) is too small '
                               f'or misaligned ({self.activation_bytes} bytes needed)')
        if hasattr(self.context, 'set_device_memory'):  # TensorRT >= 10.1
            self.context.set_device_memory(address, size)
        else:
            self.context.device_memory = address
        self._activations_set = True

    def __call__(self, feeds: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        with torch.cuda.device(self.device):
            return self._run(feeds)

    def _run(self, feeds: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if not self._activations_set:
            raise BackendError('TensorRT engine run before its activation memory was given')
        keep = []  # the tensors whose addresses are bound, alive until the work is enqueued
        for name in self.inputs:
            tensor = cuda_buffers.aligned(feeds[name].to(self.device, self.dtypes[name]))
            keep.append(tensor)
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise BackendError(f'TensorRT rejected input {name} of shape '
                                   f'{tuple(tensor.shape)} (largest batch {self.max_batch})')
            cuda_buffers.bind(self.context, name, tensor.data_ptr())
        outputs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            cuda_buffers.bind(self.context, name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError('TensorRT execute_async_v3 failed (see the TensorRT log)')
        # Enqueued: freeing ``keep`` now is safe, the caching allocator only hands the
        # memory to later work on the same stream.
        del keep
        return outputs

    def close(self) -> None:
        self.context = self.engine = None
