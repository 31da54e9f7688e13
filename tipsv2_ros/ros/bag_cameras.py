# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The cameras of a recorded bag: which image topics, their camera_info, their frames.

Each image topic is one camera, and its outputs are written next to it as the node writes
them next to its input: ``/front/image_raw`` -> ``/front/depth/image``,
``/front/segmentation/labels``... (``/front/image_raw/compressed`` likewise), with the
camera info read from ``/front/camera_info``. Frames are decoded by the node's own
`image_decode.image_to_rgb`; compressed frames (jpeg, png) by Pillow.
"""
import bisect
import io
from typing import Dict, List, Sequence

import numpy as np

from tipsv2_ros.ros import bag_types, image_decode
from tipsv2_ros.ros.bag_input import BagError, InputBag

COMPRESSED_SUFFIX = '/compressed'


def _stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


class Camera:
    """One input image topic: where its outputs go and the camera info of each frame."""

    def __init__(self, topic: str, msgtype: str):
        self.topic, self.msgtype = topic, msgtype
        base = topic
        if msgtype == bag_types.COMPRESSED_IMAGE and topic.endswith(COMPRESSED_SUFFIX):
            base = topic[:-len(COMPRESSED_SUFFIX)]
        self.prefix = base.rsplit('/', 1)[0]  # '' for a top-level topic such as /image
        self.info_topic = f'{self.prefix}/camera_info'
        self._info_times: List[int] = []
        self._infos: List[bytes] = []
        self._by_stamp: Dict[int, bytes] = {}
        self.labels_written = False

    def output(self, name: str) -> str:
        """Return the output topic ``name`` (e.g. 'depth/image') of this camera."""
        return f'{self.prefix}/{name}'

    def add_info(self, time_ns: int, data: bytes) -> None:
        """Remember a camera_info message (CDR) received at ``time_ns``; in recorded order."""
        try:
            stamp = _stamp_ns(bag_types.deserialize(data, bag_types.CAMERA_INFO).header)
        except Exception:  # a damaged camera_info is as good as none
            return
        self._info_times.append(time_ns)
        self._infos.append(data)
        self._by_stamp.setdefault(stamp, data)

    def camera_info(self, msg, time_ns: int):
        """Return the camera info for a frame: the one with its stamp, else the latest before.

        A recorder receives a camera's image and camera_info in either order, so the one
        stamped like the frame wins; without it, what the node would hold: the latest one
        received before the frame.
        """
        data = self._by_stamp.get(_stamp_ns(msg.header))
        if data is None:
            index = bisect.bisect_right(self._info_times, time_ns)
            data = self._infos[index - 1] if index else None
        return None if data is None else bag_types.deserialize(data, bag_types.CAMERA_INFO)


def select_cameras(bag: InputBag, requested: Sequence[str]) -> List[Camera]:
    """Return the cameras of ``requested`` topics, or of every image topic when none is.

    Every sensor_msgs/Image topic is taken by default, and a CompressedImage topic unless
    its raw topic is there too (image_transport records both).

    Raises:
        BagError: a requested topic is missing or not an image, or nothing to process.
    """
    images = {name: t.msgtype for name, t in bag.topics.items()
              if t.msgtype in bag_types.IMAGE_TYPES}
    listing = ', '.join(f'{name} ({msgtype.rsplit("/", 1)[-1]})'
                        for name, msgtype in sorted(images.items())) or 'none'
    if requested:
        topics = []
        for name in requested:
            name = '/' + name.lstrip('/')
            if name not in bag.topics:
                raise BagError(f'no topic {name} in {bag.path}; its image topics: {listing}')
            if name not in images:
                raise BagError(f'{name} is a {bag.topics[name].msgtype} topic, not an image; '
                               f'the image topics of {bag.path}: {listing}')
            if name not in topics:
                topics.append(name)
    else:
        topics = [name for name, msgtype in sorted(images.items())
                  if not (msgtype == bag_types.COMPRESSED_IMAGE and name.endswith(
                      COMPRESSED_SUFFIX) and name[:-len(COMPRESSED_SUFFIX)] in images)]
        if not topics:
            others = ', '.join(sorted(bag.topics)) or 'none'
            raise BagError(f'{bag.path} has no sensor_msgs/Image or CompressedImage topic '
                           f'(its topics: {others})')
    cameras = [Camera(name, images[name]) for name in topics]
    by_prefix: Dict[str, Camera] = {}
    for camera in cameras:
        other = by_prefix.setdefault(camera.prefix, camera)
        if other is not camera:
            raise BagError(f'{other.topic} and {camera.topic} would write the same outputs '
                           f'({camera.output("depth/image")}...); choose one with --image')
    return cameras


def decode_frame(msg, msgtype: str) -> np.ndarray:
    """Return the (H, W, 3) uint8 RGB frame of an Image or CompressedImage message.

    Raises:
        image_decode.ImageConversionError: an encoding or format that is not a camera image
            this path reads (the message says which).
    """
    if msgtype == bag_types.IMAGE:
        return image_decode.image_to_rgb(msg)
    return _compressed_to_rgb(msg)


def _compressed_to_rgb(msg) -> np.ndarray:
    from PIL import Image as PILImage, UnidentifiedImageError
    fmt = msg.format[:60]
    if 'compresseddepth' in fmt.lower().replace(' ', ''):
        raise image_decode.ImageConversionError(
            f'compressed format {fmt!r} holds depth data, not a camera image')
    try:
        with PILImage.open(io.BytesIO(bytes(msg.data))) as image:
            image.load()
            if image.mode.startswith('I;16') or image.mode == 'I':
                # 16-bit grey: the high byte, as image_decode does for mono16.
                grey = (np.asarray(image, np.uint32) >> 8).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            return np.asarray(image.convert('RGB'))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise image_decode.ImageConversionError(
            f'compressed {fmt!r} data cannot be decoded: {error}') from None
