# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Compressed camera input: sensor_msgs/CompressedImage (jpeg, png) to RGB for the model.

The node's ``image_transport`` parameter uses image_transport's transport names: ``raw``
subscribes to ``image`` (sensor_msgs/Image), ``compressed`` to ``image/compressed``, the
topic image_transport's compressed plugin publishes. That plugin writes ``format`` as
``"<original encoding>; <jpeg|png> compressed <encoding fed to the codec>"``, e.g.
``"rgb8; jpeg compressed bgr8"`` or ``"mono8; png compressed "``; older publishers write just
``"jpeg"``. The codec is fed BGR images the OpenCV way, which a JPEG or PNG file stores as
true RGB, so a standard decoder (Pillow here) returns the right colours. Only when the codec
was fed RGB bytes as if they were BGR (``"... compressed rgb8"``) are red and blue swapped
in the file, and swapped back here, as the plugin's subscriber does.
``compressedDepth`` (the depth plugin) and other codecs are refused with a clear error.
"""
import io
from typing import Tuple

import numpy as np
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image

from tipsv2_ros.ros import image_decode

TRANSPORTS = ('raw', 'compressed')
_CODECS = {'jpeg': 'JPEG', 'jpg': 'JPEG', 'png': 'PNG'}
# Decompression bombs: a few hundred bytes of PNG can claim gigapixels. 8K UHD plus margin.
MAX_PIXELS = 7680 * 4320 * 2


class CompressedImageError(image_decode.ImageConversionError):
    """A compressed frame that cannot be decoded; the message says why."""


def input_topic(image_topic: str, transport: str) -> Tuple[str, type]:
    """Return the (topic, message type) a ``transport`` subscription of ``image_topic`` uses."""
    if transport == 'compressed':
        return f'{image_topic}/compressed', CompressedImage
    return image_topic, Image


def parse_format(text: str) -> Tuple[str, str, bool]:
    """Return (codec, original encoding, red and blue swapped) from a ``format`` string.

    Raises:
        CompressedImageError: a codec other than jpeg or png (e.g. compressedDepth).
    """
    head, sep, tail = text.partition(';')
    original = head.strip() if sep else ''
    words = (tail if sep else head).lower().split()
    if 'compresseddepth' in words or 'compresseddepth' in text.lower():
        raise CompressedImageError(
            f'format {text[:60]!r} is compressedDepth (a depth image); this input takes '
            'colour or mono frames (jpeg or png)')
    codec = next((word for word in words if word in _CODECS), None)
    if codec is None and not text.strip():
        codec = ''  # no format at all: let the decoder recognise the data
    if codec is None:
        raise CompressedImageError(f'unsupported compressed format {text[:60]!r}; '
                                   'supported: jpeg, png (image_transport compressed)')
    fed = words[words.index('compressed') + 1] if 'compressed' in words[:-1] else ''
    return codec, original, fed.startswith('rgb')


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a jpeg or png CompressedImage to an (H, W, 3) uint8 RGB array.

    16-bit PNGs keep their high byte, like ``image_decode`` does for 16-bit raw frames.
    """
    codec, _, swapped = parse_format(msg.format)
    data = bytes(msg.data)
    if not data:
        raise CompressedImageError(f'empty {codec or "compressed"} frame (no data)')
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            if codec and image.format != _CODECS[codec]:
                raise CompressedImageError(
                    f'format says {codec} but the data is {image.format or "not an image"}')
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise CompressedImageError(f'{codec} frame of {width}x{height} pixels is '
                                           f'larger than {MAX_PIXELS} pixels')
            rgb = _to_rgb(image)
    except CompressedImageError:
        raise
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as error:
        # Pillow says "cannot identify image file", "image file is truncated", ...
        raise CompressedImageError(f'{codec or "compressed"} frame cannot be decoded: '
                                   f'{error}') from None
    return rgb[..., ::-1] if swapped else rgb


def _to_rgb(image: 'PILImage.Image') -> np.ndarray:
    if image.mode.startswith('I'):  # 16-bit grey PNG ('I;16', or 'I' in older Pillow)
        grey = (np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert('RGB'))


def frame_to_rgb(msg) -> np.ndarray:
    """Return any input frame (Image or CompressedImage) as RGB (see `image_decode`)."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg)
    return image_decode.image_to_rgb(msg)
