# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Device buffers TensorRT accepts: 256-byte aligned, bound with checked return values.

``IExecutionContext.set_tensor_address`` requires addresses aligned to 256 bytes and returns
False for any other. Views are not always aligned: ``frame[None]`` of a batch, or the chunks
of ``split``, start ``i * 3 * H * W * 4`` bytes into their parent, which is a multiple of 256
only when the patch count is a multiple of 16 (not for 98x126, 364x490 or 476x476). Such a
view is copied into a fresh block (the CUDA caching allocator hands out 512-byte aligned
blocks); a refused address raises before anything is enqueued, so a context never runs with
the stale address of a freed buffer.

Several engines run one after another on one stream never need their activation memory at
the same time, so they can share one block of the largest size (``SharedActivations``).
"""
from typing import Iterable

import torch

from tipsv2_ros.runtime.backends.base import BackendError

ALIGNMENT = 256


def is_aligned(address: int, alignment: int = ALIGNMENT) -> bool:
    """Whether a device address may be bound (TensorRT: a multiple of 256 bytes)."""
    return int(address) % alignment == 0


def aligned(tensor: torch.Tensor) -> torch.Tensor:
    """Return ``tensor`` contiguous at an aligned address: itself, or a fresh copy."""
    tensor = tensor.contiguous()
    if tensor.numel() == 0 or is_aligned(tensor.data_ptr()):
        return tensor
    fresh = torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device)
    return fresh.copy_(tensor)


def bind(context, name: str, address: int) -> None:
    """Bind ``address`` to the tensor ``name``; raise a BackendError when it is refused."""
    if not is_aligned(address):
        raise BackendError(f'TensorRT tensor {name}: address {address:#x} is not aligned to '
                           f'{ALIGNMENT} bytes')
    if not context.set_tensor_address(name, int(address)):
        raise BackendError(f'TensorRT refused the address {address:#x} of tensor {name} '
                           '(see the TensorRT log)')


class SharedActivations:
    """One device block holding the activations of engines run one after another.

    Each runner exposing ``activation_bytes`` and ``use_activation_memory(address, size)``
    gets the same block, sized for the largest; others are left alone.

    Args:
        runners: the engines (any callables; those without the two members are skipped).
        device: where the block lives.
    """

    def __init__(self, runners: Iterable, device: torch.device):
        users = [r for r in runners if hasattr(r, 'use_activation_memory')]
        self.bytes = max((int(r.activation_bytes) for r in users), default=0)
        self.buffer = None
        if not users:
            return
        # One alignment more than needed, so the block can start at an aligned address
        # whatever the allocator returns (CUDA's are aligned already).
        size = max(self.bytes, ALIGNMENT)  # never an empty block, even if none is needed
        self.buffer = torch.empty(size + ALIGNMENT, dtype=torch.uint8, device=device)
        self.address = self.buffer.data_ptr() + (-self.buffer.data_ptr()) % ALIGNMENT
        for runner in users:
            runner.use_activation_memory(self.address, size)
