# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Writing the output bag: a rosbag2 folder (mcap or sqlite3), or a lone .mcap file.

Topics are added when their first message comes, each with its complete definition and
type hash (`bag_types`) and the QoS the node offers on it, so ``ros2 bag play`` republishes
segmentation/label_info latched as the node does. ``close`` writes the index and
metadata.yaml; it is what makes an interrupted run's bag readable, so callers run it in a
``finally``.
"""
import pathlib
import shutil
from typing import Dict, Optional, Sequence

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability
from rosbags.interfaces import QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from tipsv2_ros.ros import bag_types
from tipsv2_ros.ros.bag_input import BagError, STORAGE_SUFFIXES

STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
_ZERO = QosTime(0, 0)


def _qos(depth: int, durability: QosDurability) -> Qos:
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, durability, _ZERO, _ZERO,
               QosLiveliness.AUTOMATIC, _ZERO, False)


# What the node offers: camera_io.OUTPUT_QOS, and LATCHED_QOS for the label info.
OUTPUT_QOS = _qos(2, QosDurability.VOLATILE)
LATCHED_QOS = _qos(1, QosDurability.TRANSIENT_LOCAL)


def check_output(path, overwrite: bool, inputs: Sequence[pathlib.Path] = ()) -> None:
    """Refuse an existing OUTPUT (unless ``overwrite`` and it is a bag) or the input itself.

    Raises:
        BagError: the output cannot be written there.
    """
    path = pathlib.Path(path)
    resolved = path.resolve()
    for source in inputs:
        source = pathlib.Path(source).resolve()
        if resolved == source or source.is_relative_to(resolved):
            raise BagError(f'{path}: the output would replace the input bag')
    if not path.exists() and not path.is_symlink():
        return
    if not overwrite:
        raise BagError(f'{path} exists; choose another OUTPUT or pass --overwrite')
    if path.is_dir() and not _looks_like_bag(path):
        raise BagError(f'{path} exists and is not a bag (no metadata.yaml, or other files in '
                       'it); not removing it, even with --overwrite')
    if path.is_file() and path.suffix not in STORAGE_SUFFIXES:
        raise BagError(f'{path} exists and is not a .mcap or .db3 file; not removing it')


def _looks_like_bag(folder: pathlib.Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    storage = {n for n in names if pathlib.Path(n).suffix in STORAGE_SUFFIXES}
    return not names or bool(storage) and names <= storage | {'metadata.yaml'}


def remove_output(path) -> None:
    """Remove a previous output that `check_output` allowed to be overwritten."""
    path = pathlib.Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class OutputBag:
    """A new bag; ``path`` ending in .mcap gives one .mcap file instead of a bag folder."""

    def __init__(self, path, storage: str = 'mcap'):
        self.path = pathlib.Path(path)
        self.single_file = self.path.suffix == '.mcap'
        if self.single_file:
            storage = 'mcap'
        if storage not in STORAGES:
            raise BagError(f'storage {storage!r}: expected one of {", ".join(STORAGES)}')
        self.storage = storage
        # A lone .mcap is written as a bag folder next to it, then moved out of it on close.
        self._folder = self.path.with_name(self.path.name + '.partial') if self.single_file \
            else self.path
        if self._folder.exists():
            raise BagError(f'{self._folder} exists (left by an earlier run?); remove it')
        try:
            self._writer = Writer(self._folder, version=9, storage_plugin=STORAGES[storage])
            self._writer.open()
        except Exception as error:  # rosbags raises WriterError or OSError
            raise BagError(f'{self.path}: cannot create the bag: {error}') from None
        self._connections: Dict[str, object] = {}
        self.counts: Dict[str, int] = {}

    def add_topic(self, topic: str, msgtype: str, qos: Sequence[Qos] = (OUTPUT_QOS,),
                  msgdef: str = '', digest: str = '') -> bool:
        """Add ``topic`` once; the definition comes from the type store unless recorded.

        Returns False (and adds nothing) when no complete definition of ``msgtype`` is
        known: a topic other tools could not decode is not written.
        """
        if topic in self._connections:
            return True
        store = bag_types.typestore()
        if msgdef and digest:
            conn = self._writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=digest,
                                               offered_qos_profiles=list(qos))
        elif bag_types.is_known(msgtype):
            conn = self._writer.add_connection(topic, msgtype, typestore=store,
                                               offered_qos_profiles=list(qos))
        else:
            return False
        self._connections[topic] = conn
        self.counts[topic] = 0
        return True

    def write(self, topic: str, time_ns: int, data: bytes) -> None:
        """Write CDR ``data`` on an added ``topic`` at receive time ``time_ns``."""
        self._writer.write(self._connections[topic], int(time_ns), data)
        self.counts[topic] += 1

    def write_message(self, topic: str, time_ns: int, msg, msgtype: str,
                      qos: Optional[Qos] = None) -> None:
        """Add ``topic`` if new and write the rclpy message ``msg`` on it."""
        self.add_topic(topic, msgtype, (qos or OUTPUT_QOS,))
        self.write(topic, time_ns, bag_types.serialize(msg))

    def close(self) -> None:
        """Write the index and metadata.yaml (and move a lone .mcap into place)."""
        self._writer.close()
        if self.single_file:
            (self._folder / f'{self._folder.name}.mcap').replace(self.path)
            shutil.rmtree(self._folder)
