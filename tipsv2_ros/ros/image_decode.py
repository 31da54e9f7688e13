# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Incoming camera frames: any common sensor_msgs/Image encoding to RGB for the model.

The frame path's input side (`conversions` builds the outgoing messages): untrusted layouts,
colour formats and avoiding copies. Frames become numpy *views* of ``msg.data`` wherever the
encoding allows (see `image_to_rgb`), so a frame costs no host copy before it reaches the
device. `check_layout` and `ImageConversionError` also serve `conversions.image_to_array`.
"""
import numpy as np
from sensor_msgs.msg import Image

# encoding: (channels, bytes per channel, channel order); 8UC3 and 8UC4 are BGR like OpenCV.
_PACKED = {
    'rgb8': (3, 1, 'rgb'), 'bgr8': (3, 1, 'bgr'), 'rgba8': (4, 1, 'rgb'), 'bgra8': (4, 1, 'bgr'),
    'rgb16': (3, 2, 'rgb'), 'bgr16': (3, 2, 'bgr'), 'rgba16': (4, 2, 'rgb'),
    'bgra16': (4, 2, 'bgr'), 'mono8': (1, 1, 'grey'), 'mono16': (1, 2, 'grey'),
    '8UC1': (1, 1, 'grey'), '8UC3': (3, 1, 'bgr'), '8UC4': (4, 1, 'bgr'),
}
# 'yuv422' is UYVY in sensor_msgs/image_encodings.hpp; 'uyvy' and 'yuyv' are newer names.
_YUV422 = {'yuv422': 'uyvy', 'uyvy': 'uyvy', 'yuv422_yuy2': 'yuyv', 'yuyv': 'yuyv'}
_BAYER = {f'bayer_{p}{bits}': (p, bits // 8) for p in ('rggb', 'bggr', 'gbrg', 'grbg')
          for bits in (8, 16)}
SUPPORTED_ENCODINGS = tuple(_PACKED) + tuple(_YUV422) + tuple(_BAYER)
# BT.601 video-range luma, 1.164 * (Y - 16), plus 0.5 so that the cast to uint8 rounds.
_LUMA = ((np.arange(256) - 16) * 1.164 + 0.5).astype(np.float32)


class ImageConversionError(ValueError):
    """An image message or array that cannot be converted; the message says why.

    For example ``unsupported image encoding '32FC1'; supported: rgb8, bgr8, …`` or
    ``rgb8 image step 10 is smaller than width * bytes per pixel = 4 * 3 = 12``.
    """


def image_to_rgb(msg: Image) -> np.ndarray:
    """Return the image as an (H, W, 3) uint8 RGB array, a view of ``msg.data`` if possible.

    Views (no copy): rgb8, rgba8 (channel slice), bgr8, bgra8, 8UC3, 8UC4 (reversed channels:
    a negative stride), mono8, 8UC1 (the grey channel broadcast with a zero stride), and the
    16-bit variants of these (the view reads the high byte of each sample, i.e. ``>> 8``).
    Copies: yuv422/uyvy and yuv422_yuy2/yuyv (BT.601, video range, as OpenCV), and bayer_*
    (a 2x2-cell demosaic: enough for a model that sees the image at 448x448).

    A view aliases the message, so don't write to it, and keep in mind that ``msg.data``
    cannot be resized while it lives. ``processing.to_pixel_values`` accepts all these views.
    """
    encoding = msg.encoding
    if encoding in _PACKED:
        channels, depth, order = _PACKED[encoding]
        check_layout(msg, channels * depth)
        # The high byte of a 16-bit sample comes last in little-endian data.
        offset = depth - 1 if depth == 2 and not msg.is_bigendian else 0
        stride = {'rgb': depth, 'bgr': -depth, 'grey': 0}[order]
        if order == 'bgr':
            offset += 2 * depth
        return np.ndarray((msg.height, msg.width, 3), np.uint8, msg.data, offset,
                          (msg.step, channels * depth, stride))
    if encoding in _YUV422:
        return _yuv422_to_rgb(msg, _YUV422[encoding])
    if encoding in _BAYER:
        return _bayer_to_rgb(msg, *_BAYER[encoding])
    # repr() of a bounded prefix: the encoding is untrusted text that goes into the log.
    raise ImageConversionError(f'unsupported image encoding {encoding[:40]!r}; supported: '
                               f"{', '.join(SUPPORTED_ENCODINGS)}")


def check_layout(msg: Image, pixel_bytes: int) -> None:
    """Raise `ImageConversionError` unless ``msg`` is non-empty and its data fills its rows."""
    h, w, step, enc = msg.height, msg.width, msg.step, msg.encoding
    if h == 0 or w == 0:
        raise ImageConversionError(f'empty {enc} image: width {w}, height {h}')
    if step < w * pixel_bytes:
        raise ImageConversionError(f'{enc} image step {step} is smaller than width * bytes per '
                                   f'pixel = {w} * {pixel_bytes} = {w * pixel_bytes}')
    if len(msg.data) < step * h:
        raise ImageConversionError(f'{enc} image has {len(msg.data)} bytes of data, fewer than '
                                   f'step * height = {step} * {h} = {step * h}')


def _yuv422_to_rgb(msg: Image, layout: str) -> np.ndarray:
    if msg.width % 2:
        raise ImageConversionError(f'{msg.encoding} image needs an even width (two pixels '
                                   f'share one chroma sample), got {msg.width}')
    check_layout(msg, 2)
    h, w = msg.height, msg.width
    # (H, W/2, 4) macro-pixels of two pixels each: U Y0 V Y1 (uyvy) or Y0 U Y1 V (yuyv).
    macro = np.ndarray((h, w // 2, 4), np.uint8, msg.data, 0, (msg.step, 4, 1))
    (y0, y1), u, v = ((1, 3), 0, 2) if layout == 'uyvy' else ((0, 2), 1, 3)
    u = macro[..., u].astype(np.float32) - 128
    v = macro[..., v].astype(np.float32) - 128
    # OpenCV's ITU-R BT.601 coefficients (ITUR_BT_601_C*), so results match cv_bridge's.
    chroma = (1.596 * v, -0.391 * u - 0.813 * v, 2.018 * u)  # R, G, B offsets per pair
    rgb = np.empty((h, w // 2, 2, 3), np.float32)
    # One long loop per (pixel of the pair, channel): broadcasting into the small (2, 3)
    # inner shape in one call is five times slower in numpy.
    for k, y in enumerate((y0, y1)):
        luma = _LUMA[macro[..., y]]
        for c in range(3):
            np.add(luma, chroma[c], out=rgb[..., k, c])
    return np.clip(rgb, 0, 255, out=rgb).astype(np.uint8).reshape(h, w, 3)


def _bayer_to_rgb(msg: Image, pattern: str, depth: int) -> np.ndarray:
    check_layout(msg, depth)
    h, w = msg.height, msg.width
    if h < 2 or w < 2:
        raise ImageConversionError(f'{msg.encoding} image must be at least 2x2, got {w}x{h}')
    offset = depth - 1 if depth == 2 and not msg.is_bigendian else 0
    mosaic = np.ndarray((h, w), np.uint8, msg.data, offset, (msg.step, depth))
    h2, w2 = h // 2, w // 2
    sites = [mosaic[i:2 * h2:2, j:2 * w2:2] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1))]
    greens = [s for s, c in zip(sites, pattern) if c == 'g']
    green = ((greens[0].astype(np.uint16) + greens[1] + 1) >> 1).astype(np.uint8)
    cells = np.stack([sites[pattern.index('r')], green, sites[pattern.index('b')]], axis=-1)
    # Each 2x2 cell becomes one colour; an odd last row or column repeats its neighbour.
    rgb = np.repeat(cells, 2, axis=1)
    if w % 2:
        rgb = np.concatenate([rgb, rgb[:, -1:]], axis=1)
    rgb = np.repeat(rgb, 2, axis=0)
    return np.concatenate([rgb, rgb[-1:]], axis=0) if h % 2 else rgb
