# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Device-to-host transfer of a frame's outputs in one copy.

A frame has several outputs (depth, normals, labels, confidence, ...). Copying each with
``.cpu()`` costs one synchronous copy from pageable memory and one wait for the whole device
per output; here they are packed into one device buffer (each segment 16-byte aligned, so
every dtype can be viewed in place), copied once into pinned host memory on the current
stream, and only that stream is waited for. The arrays returned are views of the pinned
buffer, which lives as long as they do (PyTorch's pinned-memory cache reuses it after).
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

SEGMENT_ALIGNMENT = 16


class Segment(NamedTuple):
    offset: int  # bytes from the start of the packed buffer
    nbytes: int
    dtype: torch.dtype
    shape: Tuple[int, ...]


def _host_dtype(tensor: torch.Tensor) -> torch.Tensor:
    """float32 and uint8 stay; other types (fp16 outputs) become float32."""
    return tensor if tensor.dtype in (torch.uint8, torch.float32) else tensor.float()


def layout(tensors: Sequence[torch.Tensor]) -> Tuple[List[Segment], int]:
    """Return each tensor's segment in the packed buffer, and the buffer's size in bytes."""
    segments, offset = [], 0
    for tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        segments.append(Segment(offset, nbytes, tensor.dtype, tuple(tensor.shape)))
        offset += -(-nbytes // SEGMENT_ALIGNMENT) * SEGMENT_ALIGNMENT
    return segments, offset


def pack(tensors: Sequence[torch.Tensor], out: torch.Tensor, segments: Sequence[Segment]):
    """Copy ``tensors`` into the uint8 buffer ``out`` at their segments."""
    for tensor, segment in zip(tensors, segments):
        flat = tensor.contiguous().reshape(-1).view(torch.uint8)
        out[segment.offset:segment.offset + segment.nbytes].copy_(flat)
    return out


def unpack(buffer: torch.Tensor, segments: Sequence[Segment]) -> List[np.ndarray]:
    """Numpy views of the segments of a host uint8 ``buffer`` (no copy)."""
    return [buffer[s.offset:s.offset + s.nbytes].view(s.dtype).reshape(s.shape).numpy()
            for s in segments]


def to_host(tensors: Sequence[Optional[torch.Tensor]]) -> List[Optional[np.ndarray]]:
    """Return C-contiguous float32/uint8 arrays of ``tensors`` (None stays None)."""
    present = [_host_dtype(t) for t in tensors if t is not None]
    if not present or present[0].device.type != 'cuda':
        arrays = iter([np.ascontiguousarray(t.cpu().numpy()) for t in present])
        return [None if t is None else next(arrays) for t in tensors]
    device = present[0].device
    segments, total = layout(present)
    packed = pack(present, torch.empty(total, dtype=torch.uint8, device=device), segments)
    host = torch.empty(total, dtype=torch.uint8, pin_memory=True)
    host.copy_(packed, non_blocking=True)
    torch.cuda.current_stream(device).synchronize()  # this stream only, not the device
    arrays = iter(unpack(host, segments))
    return [None if t is None else next(arrays) for t in tensors]
