# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2 bag``: the node's frame path over a recorded bag, every frame, into a new bag.

Parameters are read as the node reads them (`bag_params`); the runtime comes from the
same `factory.build`; frames are decoded by `image_decode`, run through the same
`Pipeline.run` and turned into messages by the node's own `camera_io.frame_messages`. Each
output carries its frame's header and is written at the frame's receive time, so it lines
up with the recording. Frames are batched (the backend's largest batch, else 4); none is
dropped. Nothing here prints: the command line shows ``log`` and ``progress``.
"""
import re
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

from tipsv2_ros.ros import bag_types, camera_io
from tipsv2_ros.ros.bag_cameras import Camera, decode_frame, select_cameras
from tipsv2_ros.ros.bag_input import BagError, open_bag
from tipsv2_ros.ros.bag_output import check_output, LATCHED_QOS, OutputBag, remove_output
from tipsv2_ros.ros.bag_params import read_params
from tipsv2_ros.ros.image_decode import ImageConversionError

BASE_OUTPUTS = ('depth/image', 'normals/image', 'segmentation/labels',
                'segmentation/confidence')
COLOURED_OUTPUTS = ('depth/colored', 'normals/colored', 'segmentation/colored')
DEFAULT_BATCH = 4


class Options(NamedTuple):
    """What ``tipsv2 bag`` was asked for (the flags)."""

    images: Sequence[str] = ()
    params_file: str = ''
    assignments: Sequence[str] = ()          # -p NAME:=VALUE, as the node takes them
    overrides: Dict[str, Any] = {}           # flags that set parameters (labels, backend...)
    colored: bool = False
    points: bool = False
    copy_input: bool = False
    copy_all: bool = False
    storage: str = 'mcap'
    overwrite: bool = False
    batch: int = 0                           # 0: the backend's largest batch, else 4


class Summary(NamedTuple):
    frames: int                  # image messages read
    processed: int               # frames whose outputs were written
    skipped: Dict[str, int]      # reason -> frames
    outputs: Dict[str, int]      # topic -> messages written (copies included)
    stopped: Optional[str]       # where a damaged input ended, else None
    interrupted: bool
    seconds: float


class BagJob:
    """One run: the input, the runtime, the output and the counts."""

    def __init__(self, source, output, options: Options, log: Callable[[str], None]):
        self.options, self.log = options, log
        self.bag = open_bag(source)
        for note in self.bag.notes:
            log(f'note: {note}')
        self.cameras = select_cameras(self.bag, options.images)
        check_output(output, options.overwrite, [self.bag.path])
        self.output_path = output
        self.params = read_params(options.params_file, options.assignments, options.overrides)
        self.runtime = self.label_set = None
        self.out: Optional[OutputBag] = None
        self.frames = self.processed = 0
        self._skipped: Dict[str, tuple] = {}
        self._warned = set()
        self._batch: List = []
        wanted = set(BASE_OUTPUTS) | {'depth/camera_info'}
        if options.colored:
            wanted |= set(COLOURED_OUTPUTS)
        if options.points or self.params['publish_points']:
            wanted.add('depth/points')
        self._wanted = wanted.__contains__

    def total_frames(self) -> Optional[int]:
        counts = [self.bag.topics[c.topic].count for c in self.cameras]
        return None if None in counts else sum(counts)

    def start(self) -> None:
        """Load the model (as the node does) and create the output bag."""
        from tipsv2_ros.runtime import factory
        from tipsv2_ros.runtime.labels import LabelError
        try:
            self.runtime = factory.build(self.params, log=self.log)
            self.tasks = frozenset(self.params['tasks']) & self.runtime.backend.tasks
            if 'segmentation' in self.tasks:
                self.label_set = self.runtime.labels.build(self.params['labels'],
                                                           self.params['templates'])
        except (factory.StartupError, LabelError, ValueError) as error:
            raise BagError(str(error)) from None
        batch = self.options.batch or getattr(self.runtime.backend, 'max_batch', 0)
        self.batch = max(1, int(batch or DEFAULT_BATCH))
        info_topics = {c.info_topic for c in self.cameras} & set(self.bag.topics)
        by_info = {c.info_topic: [k for k in self.cameras if k.info_topic == c.info_topic]
                   for c in self.cameras}
        for topic, time_ns, data in self.bag.messages(info_topics):
            for camera in by_info[topic]:
                camera.add_info(time_ns, data)
        if self.options.overwrite:
            remove_output(self.output_path)
        self.out = OutputBag(self.output_path, self.options.storage)

    def _copied_topics(self) -> List[str]:
        if self.options.copy_all:
            topics = list(self.bag.topics)
        elif self.options.copy_input:
            topics = [t for c in self.cameras for t in (c.topic, c.info_topic)
                      if t in self.bag.topics]
        else:
            return []
        outputs = {c.output(n) for c in self.cameras for n in
                   (*BASE_OUTPUTS, *COLOURED_OUTPUTS, 'depth/camera_info', 'depth/points',
                    'segmentation/label_info')}
        copied = []
        for name in topics:
            topic = self.bag.topics[name]
            if name in outputs:
                self.log(f'note: not copying {name}: this run writes that topic')
            elif self.out.add_topic(name, topic.msgtype, topic.qos, topic.msgdef,
                                    topic.digest):
                copied.append(name)
            else:
                self.log(f'note: not copying {name}: the bag has no definition of '
                         f'{topic.msgtype} and it is no standard type')
        return copied

    def run(self, progress: Callable[[int], None], should_stop: Callable[[], bool]) -> bool:
        """Process every frame (and copy what was asked); return False when interrupted."""
        copied = set(self._copied_topics())
        cameras = {c.topic: c for c in self.cameras}
        if should_stop():  # asked while the model was loading
            return False
        for topic, time_ns, data in self.bag.messages(set(cameras) | copied):
            if topic in copied:
                self.out.write(topic, time_ns, data)
            camera = cameras.get(topic)
            if camera is not None:
                self.frames += 1
                if not self._add_frame(camera, time_ns, data):
                    progress(1)  # skipped: counted, and it moves the bar on
                elif len(self._batch) >= self.batch:
                    progress(self._flush())
            if should_stop():
                progress(self._flush())
                return False
        progress(self._flush())
        return True

    def _add_frame(self, camera: Camera, time_ns: int, data: bytes) -> bool:
        """Decode a frame into the batch; return False when it is skipped."""
        try:
            msg = bag_types.deserialize(data, camera.msgtype)
            frame = decode_frame(msg, camera.msgtype)
        except ImageConversionError as error:
            self._skip(camera, str(error))
            return False
        except Exception as error:  # a damaged message: count it, go on
            self._skip(camera, f'undecodable message ({type(error).__name__})')
            return False
        stamp = msg.header.stamp
        if stamp.sec == 0 and stamp.nanosec == 0:
            self._warn(f'{camera.topic}: the stamp is zero; outputs keep it')
        if not msg.header.frame_id:
            self._warn(f'{camera.topic}: empty frame_id; outputs copy it, TF lookups fail')
        self._batch.append((camera, time_ns, msg, frame))
        return True

    def _skip(self, camera: Camera, reason: str) -> None:
        """Count a frame that cannot be read; report each kind of problem once."""
        short = reason.split('; supported:')[0]  # the list of encodings is said once
        kind = f'{camera.topic}: {re.sub(r"[0-9]+", "#", short)[:160]}'
        count, example = self._skipped.get(kind, (0, f'{camera.topic}: {short}'))
        self._skipped[kind] = (count + 1, example)
        if not count:
            self.log(f'warning: {camera.topic}: {reason} (such frames are skipped and '
                     'counted)')

    def _warn(self, text: str, kind: Optional[str] = None) -> None:
        """Log once per kind of problem (numbers folded out)."""
        kind = kind or re.sub(r'[0-9.]+', '#', text)[:160]
        if kind not in self._warned:
            self._warned.add(kind)
            self.log(f'warning: {text}')

    def _flush(self) -> int:
        """Run the pending frames through the pipeline and write their outputs."""
        batch, self._batch = self._batch, []
        if not batch:
            return 0
        params = self.params
        results = self.runtime.pipeline.run(
            [frame for _, _, _, frame in batch], self.tasks, self.label_set,
            params['output_resolution'], params['segmentation.threshold'])
        for (camera, time_ns, msg, frame), result in zip(batch, results):
            if self.label_set is not None and not camera.labels_written:
                info = camera_io.label_info_message(self.label_set,
                                                    params['segmentation.threshold'],
                                                    msg.header.stamp)
                self.out.write_message(camera.output('segmentation/label_info'), time_ns,
                                       info, bag_types.LABEL_INFO, LATCHED_QOS)
                camera.labels_written = True
            for name, out in camera_io.frame_messages(
                    result, msg, frame, params['depth.view_max'], self._wanted,
                    camera.camera_info(msg, time_ns), self._warn, camera.prefix,
                    'segmentation' in self.runtime.backend.tasks):  # as the node
                self.out.write_message(camera.output(name), time_ns, out,
                                       bag_types.output_type(name))
        self.processed += len(batch)
        return len(batch)

    def close(self) -> None:
        """Close the output (index, metadata) and the input, and release the backend."""
        try:
            if self.out is not None:
                self.out.close()
        finally:
            self.bag.close()
            if self.runtime is not None:
                self.runtime.close()

    def summary(self, interrupted: bool, seconds: float) -> Summary:
        counts = dict(self.out.counts) if self.out is not None else {}
        skipped = {example: count for count, example in self._skipped.values()}
        return Summary(self.frames, self.processed, skipped, counts,
                       self.bag.stopped, interrupted, seconds)


def run_bag(source, output, options: Options, log: Callable[[str], None],
            progress_factory: Callable[[Optional[int]], Callable[[int], None]],
            should_stop: Callable[[], bool]) -> Summary:
    """Run the whole job; the output bag is closed (valid) however the run ends.

    Raises:
        BagError: nothing could be done (bad input, parameters, weights or output).
    """
    job = BagJob(source, output, options, log)
    interrupted = False
    try:
        job.start()
        start = time.monotonic()
        log(f'{job.runtime.backend.describe()}; tasks {sorted(job.tasks)}; batches of '
            f'{job.batch}; cameras: ' + ', '.join(
                f'{c.topic} -> {c.output("...")}' for c in job.cameras))
        progress = progress_factory(job.total_frames())
        try:
            interrupted = not job.run(progress, should_stop)
        except KeyboardInterrupt:
            interrupted = True
        seconds = time.monotonic() - start
    finally:
        job.close()
    return job.summary(interrupted, seconds)
