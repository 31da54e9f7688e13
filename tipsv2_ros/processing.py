# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Pre- and post-processing around the model: torch and numpy only, no ROS, no cv2.

The official TIPS pre-processing (``tips/pytorch/run_image_encoder_inference.py``) squashes
the image to the square model input with antialiased bilinear resizing and divides by 255;
there is no mean/std normalisation. Everything else here turns model outputs into what the
node publishes: dense maps at the output size, colour views, camera intrinsics, points.
"""
import functools
from typing import Optional, Sequence, Tuple
import warnings

import numpy as np
import torch
import torch.nn.functional as F

Size = Tuple[int, int]  # (height, width)

# Google's Turbo colormap (Mikhailov 2019, Apache-2.0): every 15th of its 256 entries, as
# uint8 RGB; linear interpolation between them stays within 6 levels of the full table.
_TURBO_KEYS = np.array([
    [48, 18, 59], [63, 62, 156], [70, 102, 221], [69, 140, 253], [47, 178, 244],
    [26, 212, 208], [34, 235, 170], [82, 250, 122], [139, 255, 75], [183, 247, 53],
    [219, 226, 54], [245, 197, 58], [254, 161, 48], [249, 117, 29], [232, 75, 12],
    [206, 45, 4], [169, 22, 1], [122, 4, 3]], np.float64)


def to_pixel_values(frame: np.ndarray, size: Size, device='cpu') -> torch.Tensor:
    """Turn one RGB frame into the model input.

    Args:
        frame: (H, W, 3) uint8 RGB. Any numpy view works without a host copy: padded rows,
            a channel slice of RGBA, a reversed-channel (BGR) view with a negative stride, a
            grey image broadcast to three channels with a zero stride.
        size: the model input (height, width); the frame is squashed to it.
        device: where the resize runs.

    Returns:
        (1, 3, height, width) contiguous float32 in [0, 1] on ``device``.
    """
    return _resize_frame(frame, _check_size(size), torch.device(device)).unsqueeze(0)


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


def _resize_frame(frame: np.ndarray, size: Size, device: torch.device) -> torch.Tensor:
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
        x = F.interpolate(x[None], size, mode='bilinear', antialias=True,
                          align_corners=False)[0]
    x = x.div_(255)
    if 2 in flipped:  # resizing is per channel, so the channel flip can wait for the small map
        x = x.flip(0)
    return x.expand(3, -1, -1).contiguous() if grey else x


def _to_device(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    """Move a uint8 view with non-negative strides to ``device`` as a (strided) tensor."""
    if frame.flags.c_contiguous:
        return _as_tensor(frame).to(device)
    # Padded rows or a channel slice: moving the memory block the view spans and re-striding
    # there avoids gathering the pixels on the host first (what .to() would do).
    span = sum((n - 1) * s for n, s in zip(frame.shape, frame.strides)) + 1
    if span > 2 * frame.nbytes:
        return _as_tensor(np.ascontiguousarray(frame)).to(device)
    block = np.lib.stride_tricks.as_strided(frame, (span,), (1,))
    return _as_tensor(block).to(device).as_strided(frame.shape, frame.strides)


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
        mode: ``'bilinear'`` for depth (antialiased when shrinking), ``'normals'`` for
            bilinear followed by re-normalisation to unit length, ``'nearest'`` for labels
            and confidences (any dtype, pixel-centre aligned like ``'nearest-exact'``).
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
        x = F.interpolate(x, size, mode='bilinear', antialias=shrink, align_corners=False)
    if mode == 'normals':
        # Interpolating unit vectors shortens them where directions change. (A sum of squares:
        # torch.linalg.vector_norm over dim 1 is two orders of magnitude slower on CPU.)
        x = x * x.square().sum(1, keepdim=True).clamp_min(1e-12).rsqrt()
    return x


def _nearest_index(n_in: int, n_out: int, device) -> torch.Tensor:
    # floor((i + 0.5) * n_in / n_out) in integers, so no float rounding moves a boundary.
    return (2 * torch.arange(n_out, device=device) + 1) * n_in // (2 * n_out)


@functools.lru_cache(maxsize=None)
def _turbo_lut() -> np.ndarray:
    index = np.arange(256)
    keys = np.arange(0, 256, 15)
    lut = np.stack([np.interp(index, keys, _TURBO_KEYS[:, c]) for c in range(3)], axis=-1)
    lut = np.round(lut).astype(np.uint8)  # (256, 3)
    lut.flags.writeable = False
    return lut


def colorize_depth(depth: np.ndarray, vmin: Optional[float] = None,
                   vmax: Optional[float] = None) -> np.ndarray:
    """Colour an (H, W) depth map with Turbo: near is red, far is blue, invalid is black.

    Args:
        depth: depth in metres; NaN and infinities count as invalid.
        vmin: depth shown fully red; the smallest valid depth when None.
        vmax: depth shown fully blue; the largest valid depth when None.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth)
    if vmin is None:
        vmin = float(np.min(depth, where=valid, initial=np.inf))
    if vmax is None:
        vmax = float(np.max(depth, where=valid, initial=-np.inf))
    if not (np.isfinite(vmin) and np.isfinite(vmax)):  # no valid pixel at all
        vmin, vmax = 0.0, 1.0
    scale = 255.0 / max(vmax - vmin, 1e-6)
    index = np.clip((vmax - depth) * np.float32(scale) + 0.5, 0, 255, where=valid,
                    out=np.zeros(depth.shape, np.float32))
    rgb = _turbo_lut()[index.astype(np.uint8)]
    rgb[~valid] = 0
    return rgb


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """Map (H, W, 3) unit normals to colours, (n + 1) / 2 * 255; NaN is black.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    rgb = np.clip((np.asarray(normals, dtype=np.float32) + 1) * 127.5 + 0.5, 0, 255)
    return np.nan_to_num(rgb, nan=0.0, copy=False).astype(np.uint8)


def overlay_labels(image: np.ndarray, labels: np.ndarray, palette: np.ndarray,
                   alpha: float = 0.5) -> np.ndarray:
    """Blend label colours over an image; label 255 (no label) leaves the image unchanged.

    Args:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) uint8 label ids.
        palette: (N, 3) uint8 colours; ids past N reuse them cyclically.
        alpha: weight of the label colour, in [0, 1].

    Returns:
        (H, W, 3) uint8 RGB.
    """
    if image.shape[:2] != labels.shape or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image {image.shape} and labels {labels.shape} must be (H, W, 3) '
                         'and (H, W)')
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    colours = np.zeros((256, 3), np.uint16)
    colours[:255] = np.resize(np.asarray(palette, np.uint16).reshape(-1, 3), (255, 3))
    weights = np.full(256, int(round(alpha * 256)), np.uint16)
    weights[255] = 0
    # Fixed point with weights out of 256: uint16 cannot overflow as the weights sum to 256.
    a = weights[labels][..., None]
    out = (image * (256 - a) + colours[labels] * a + 128) >> 8
    return out.astype(np.uint8)


def label_palette(n: int) -> np.ndarray:
    """Return ``n`` distinct, deterministic colours as an (n, 3) uint8 array.

    Hues follow the golden angle so that consecutive labels differ strongly; saturation and
    value alternate so that hues which come close again still differ.
    """
    i = np.arange(n)
    hue = (i * 0.6180339887498949) % 1.0
    sat = np.where(i % 2, 0.65, 0.95)
    val = np.array([1.0, 0.8, 0.6])[(i // 2) % 3]
    k = (np.array([5.0, 3.0, 1.0]) + hue[:, None] * 6) % 6  # (n, 3): the HSV -> RGB formula
    rgb = val[:, None] * (1 - sat[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1))
    return np.round(rgb * 255).astype(np.uint8)


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


def depth_to_points(depth: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Back-project an (H, W) depth map in metres through the camera matrix ``k``.

    Returns:
        (H, W, 3) float32 XYZ in the camera optical frame (x right, y down, z forward); NaN
        where the depth is not finite and positive.
    """
    k = np.asarray(k, np.float64).reshape(3, 3)
    if k[0, 0] == 0 or k[1, 1] == 0:
        raise ValueError('the camera matrix has a zero focal length (uncalibrated camera?)')
    depth = np.asarray(depth, np.float32)
    h, w = depth.shape
    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(np.nan))
    y1 = ((np.arange(h) - k[1, 2]) / k[1, 1])[:, None]  # (H, 1) y / z
    x1 = (np.arange(w)[None, :] - k[0, 2] - k[0, 1] * y1) / k[0, 0]  # (H, W) x / z, with skew
    points = np.empty((h, w, 3), np.float32)
    np.multiply(x1, z, out=points[..., 0], casting='unsafe')
    np.multiply(y1, z, out=points[..., 1], casting='unsafe')
    points[..., 2] = z
    return points
