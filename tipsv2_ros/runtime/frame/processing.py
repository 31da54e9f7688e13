# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Pre- and post-processing around the model: torch and numpy only, no ROS, no cv2.

The official TIPS pre-processing (``tips/pytorch/run_image_encoder_inference.py``) squashes
the image to the square model input with antialiased bilinear resizing and divides by 255;
there is no mean/std normalisation. Everything else here turns model outputs into what the
node publishes: dense maps at the output size, camera intrinsics, points (the colour views
are in ``colour``).
"""
from typing import Sequence, Tuple
import warnings

import numpy as np
import torch
import torch.nn.functional as F

Size = Tuple[int, int]  # (height, width)


def to_pixel_values(frame: np.ndarray, size: Size, device='cpu',
                    mode: str = 'bilinear') -> torch.Tensor:
    """Turn one RGB frame into the model input.

    Args:
        frame: (H, W, 3) uint8 RGB. Any numpy view works without a host copy: padded rows,
            a channel slice of RGBA, a reversed-channel (BGR) view with a negative stride, a
            grey image broadcast to three channels with a zero stride.
        size: the model input (height, width); the frame is squashed to it.
        device: where the resize runs.
        mode: 'bilinear' (the official image-encoder pipeline) or 'bicubic' (the zero-shot
            notebook's short-side resize); both antialiased, results clamped to [0, 1].

    Returns:
        (1, 3, height, width) contiguous float32 in [0, 1] on ``device``.
    """
    if mode not in ('bilinear', 'bicubic'):
        raise ValueError(f"unknown resize mode '{mode}'; use 'bilinear' or 'bicubic'")
    return _resize_frame(frame, _check_size(size), torch.device(device), mode).unsqueeze(0)


def to_pixel_values_batch(frames: Sequence[np.ndarray], size: Size,
                          device='cpu') -> torch.Tensor:
    """Batch several frames, each of its own size; see `to_pixel_values`.

    Returns:
        (len(frames), 3, height, width) contiguous float32 in [0, 1] on ``device``.
    """
    if len(frames) == 0:
        raise ValueError('to_pixel_values_batch needs at least one frame')
    size, device = _check_size(size), torch.device(device)
    return torch.stack([_resize_frame(frame, size, device) for frame in frames])


def resize_rgb(frame: np.ndarray, size: Size) -> np.ndarray:
    """Squash an (H, W, 3) uint8 RGB frame (any view) to ``size``, e.g. under an overlay.

    Returns:
        (height, width, 3) uint8 RGB, C-contiguous.
    """
    size = _check_size(size)
    _check_frame(frame)
    frame = np.ascontiguousarray(frame)
    if frame.shape[:2] == size:
        return frame
    # torch's uint8 antialiased kernel (CPU only) follows PIL's arithmetic and is 5-10 times
    # faster than the float path; a colour view needs no more precision than uint8.
    x = _as_tensor(frame).permute(2, 0, 1).unsqueeze(0)
    x = F.interpolate(x, size, mode='bilinear', antialias=True, align_corners=False)
    return np.ascontiguousarray(x[0].permute(1, 2, 0).numpy())


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    """Wrap ``array`` without a copy; read-only inputs (messages, PIL images) stay unwritten."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='The given NumPy array is not writable')
        return torch.from_numpy(array)


def _check_size(size) -> Size:
    height, width = (int(n) for n in size)
    if height <= 0 or width <= 0:
        raise ValueError(f'size must be positive (height, width), got {tuple(size)}')
    return height, width


def _check_frame(frame: np.ndarray) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f'expected an (H, W, 3) uint8 RGB frame, got {frame.dtype} '
                         f'{frame.shape}')
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f'empty frame {frame.shape}')


def _resize_frame(frame: np.ndarray, size: Size, device: torch.device,
                  mode: str = 'bilinear') -> torch.Tensor:
    _check_frame(frame)
    # torch.from_numpy rejects negative strides, and a zero-stride channel would be expanded
    # on the host before the transfer: undo both here as views and redo them on the device.
    flipped = [d for d in range(3) if frame.strides[d] < 0]
    if flipped:
        frame = frame[tuple(slice(None, None, -1) if d in flipped else slice(None)
                            for d in range(3))]
    grey = frame.strides[2] == 0
    if grey:
        frame = frame[:, :, :1]
    x = _to_device(frame, device).permute(2, 0, 1)  # (C, H, W) uint8
    spatial = [d + 1 for d in flipped if d < 2]
    if spatial:
        x = x.flip(spatial)
    # One uint8 copy on the device, then the cast: far cheaper than resizing a strided float.
    x = x.contiguous().float()
    if tuple(x.shape[1:]) != size:
        x = F.interpolate(x[None], size, mode=mode, antialias=True, align_corners=False)[0]
        if mode == 'bicubic':  # cubic weights overshoot at edges
            x = x.clamp_(0, 255)
    x = x.div_(255)
    if 2 in flipped:  # resizing is per channel, so the channel flip can wait for the small map
        x = x.flip(0)
    return x.expand(3, -1, -1).contiguous() if grey else x


def _to_device(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    """Move a uint8 view with non-negative strides to ``device`` as a (strided) tensor."""
    if frame.flags.c_contiguous:
        return _upload(_as_tensor(frame), device)
    # Padded rows or a channel slice: moving the memory block the view spans and re-striding
    # there avoids gathering the pixels on the host first (what .to() would do).
    span = sum((n - 1) * s for n, s in zip(frame.shape, frame.strides)) + 1
    if span > 2 * frame.nbytes:
        return _upload(_as_tensor(np.ascontiguousarray(frame)), device)
    block = np.lib.stride_tricks.as_strided(frame, (span,), (1,))
    return _upload(_as_tensor(block), device).as_strided(frame.shape, frame.strides)


def _upload(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to ``device``; to CUDA through pinned memory, asynchronously.

    From pageable memory the copy is synchronous (CUDA stages it through its own pinned
    buffer while the host waits); from pinned memory (PyTorch caches the blocks) it is one
    DMA ordered on the current stream.
    """
    if device.type != 'cuda':
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def decoder_size(input_size: Size) -> Size:
    """Return the DPT decoder's output size: 8 px per 14-px patch (256x256 at 448x448).

    The decoder halves the patch grid three times, rounding up, and upsamples by 2 four
    times, so odd grids give 16 * ceil(h / 2) (e.g. 7 patches -> 64 pixels, not 56).
    """
    return tuple(16 * -(-(int(side) // 14) // 2) for side in input_size)


def output_size(policy: str, model_size: Size, camera_size: Size) -> Size:
    """Size (height, width) of the dense outputs.

    Args:
        policy: ``'model'`` for the DPT decoder's native resolution (``decoder_size``), or
            ``'input'`` for the camera resolution.
        model_size: the model input (height, width).
        camera_size: the camera image (height, width).
    """
    if policy == 'model':
        return decoder_size(model_size)
    if policy == 'input':
        return int(camera_size[0]), int(camera_size[1])
    raise ValueError(f"unknown output size policy '{policy}'; use 'model' or 'input'")


def resize_dense(x: torch.Tensor, size: Size, mode: str) -> torch.Tensor:
    """Resize (B, C, h, w) dense maps to ``size``.

    Args:
        x: the maps.
        size: (height, width).
        mode: ``'bilinear'`` for depth and probabilities (antialiased when shrinking),
            ``'normals'`` for bicubic followed by re-normalisation to unit length (the
            official decoder notebook's upsampling of normals), ``'nearest'`` for label
            images (any dtype, pixel-centre aligned like ``'nearest-exact'``).
    """
    size = _check_size(size)
    if mode == 'nearest':
        if tuple(x.shape[-2:]) == size:
            return x
        rows = _nearest_index(x.shape[-2], size[0], x.device)
        return x.index_select(-2, rows).index_select(-1, _nearest_index(x.shape[-1], size[1],
                                                                        x.device))
    if mode not in ('bilinear', 'normals'):
        raise ValueError(f"unknown resize mode '{mode}'; use 'bilinear', 'normals' or "
                         "'nearest'")
    if tuple(x.shape[-2:]) != size:
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        x = F.interpolate(x, size, mode='bicubic' if mode == 'normals' else 'bilinear',
                          antialias=shrink, align_corners=False)
    if mode == 'normals':
        # Interpolating unit vectors shortens them where directions change. (A sum of squares:
        # torch.linalg.vector_norm over dim 1 is two orders of magnitude slower on CPU.)
        x = x * x.square().sum(1, keepdim=True).clamp_min(1e-12).rsqrt()
    return x


def _nearest_index(n_in: int, n_out: int, device) -> torch.Tensor:
    # floor((i + 0.5) * n_in / n_out) in integers, so no float rounding moves a boundary.
    return (2 * torch.arange(n_out, device=device) + 1) * n_in // (2 * n_out)


def scale_camera_info(k: np.ndarray, p: np.ndarray, src: Size,
                      dst: Size) -> Tuple[np.ndarray, np.ndarray]:
    """Scale intrinsics for a squash resize from ``src`` to ``dst`` (height, width).

    Pixel centres sit at integer coordinates (ROS, OpenCV), so the resize scales pixel edges:
    u' + 0.5 = sx * (u + 0.5). Hence fx' = fx * sx and cx' = (cx + 0.5) * sx - 0.5, and the
    same along y; the stereo term Tx scales with fx.

    Args:
        k: (3, 3) camera matrix.
        p: (3, 4) projection matrix.
        src: the size ``k`` and ``p`` describe.
        dst: the size after resizing.

    Returns:
        The scaled (3, 3) and (3, 4) matrices, float64.
    """
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    a = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return (a @ np.asarray(k, np.float64).reshape(3, 3),
            a @ np.asarray(p, np.float64).reshape(3, 4))


def projection_matrix(k: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Return the 3x3 camera matrix depth is back-projected through: P's, else K's.

    P (the rectified projection, left 3x3) is what image_geometry and depth_image_proc use,
    so points built from a rectified depth image land where they do. A P whose focal lengths
    are not positive and finite (P all zeros, as some drivers publish for raw images) gives
    K instead: then the image is taken as it is, its distortion is not undone.
    """
    p = np.asarray(p, np.float64).reshape(3, 4)
    if np.isfinite(p[:, :3]).all() and p[0, 0] > 0 and p[1, 1] > 0:
        return p[:, :3].copy()
    return np.asarray(k, np.float64).reshape(3, 3)


def depth_to_points(depth: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Back-project an (H, W) depth map in metres through a camera matrix, as image_geometry.

    x = (u - cx) / fx * z and y = (v - cy) / fy * z at pixel (u, v) (the formula of
    depth_image_proc's point_cloud_xyz; the skew term is ignored there, so here too).

    Args:
        depth: (H, W) metres.
        k: a 3x3 camera matrix, e.g. from `projection_matrix`.

    Returns:
        (H, W, 3) float32 XYZ in the camera optical frame (x right, y down, z forward); NaN
        where the depth is not finite and positive.
    """
    k = np.asarray(k, np.float64).reshape(3, 3)
    if not (k[0, 0] > 0 and k[1, 1] > 0):
        raise ValueError('the camera matrix has a zero focal length (uncalibrated camera?)')
    depth = np.asarray(depth, np.float32)
    h, w = depth.shape
    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(np.nan))
    y1 = ((np.arange(h) - k[1, 2]) / k[1, 1])[:, None]  # (H, 1) y / z
    x1 = ((np.arange(w) - k[0, 2]) / k[0, 0])[None, :]  # (1, W) x / z
    points = np.empty((h, w, 3), np.float32)
    np.multiply(x1, z, out=points[..., 0], casting='unsafe')
    np.multiply(y1, z, out=points[..., 1], casting='unsafe')
    points[..., 2] = z
    return points


def mark_beyond_range(depth: np.ndarray, max_range: float) -> np.ndarray:
    """Set depth at or beyond ``max_range`` metres to +Inf in place ("too far", REP 118).

    The released depth head is an expectation over bins from 0.001 to 10 m: a surface beyond
    10 m (a window, the sky, a long corridor) comes out close to 10 m, never above, so past
    its range a depth says "far" and not how far. Returns ``depth``.
    """
    depth[depth >= np.float32(max_range)] = np.inf
    return depth
