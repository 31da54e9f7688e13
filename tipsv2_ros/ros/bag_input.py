# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Reading a recorded ROS 2 bag (sqlite3 or mcap) that may be damaged.

``open_bag`` takes a bag folder, a ``.mcap`` or a ``.db3`` file. Intact bags are read by
``rosbags``. A recording that was never closed (power cut, killed recorder) lacks its
metadata.yaml, or its mcap file lacks the summary and footer; such files are read record by
record with the ``mcap`` stream reader instead, up to the first damaged record. Damage met
while reading ends the input there: ``InputBag.stopped`` says where, and everything before
it has been delivered.
"""
import pathlib
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from rosbags.rosbag2 import Reader

STORAGE_SUFFIXES = ('.mcap', '.db3')


class BagError(Exception):
    """A bag cannot be read or written; the message says why."""


class Topic(NamedTuple):
    """One topic of the input: its type, message count and what a copy needs."""

    name: str
    msgtype: str
    count: Optional[int]   # None where a damaged file gives no count
    msgdef: str            # the recorded definition text ('' when the bag has none)
    digest: str            # the recorded type hash ('' when the bag has none)
    qos: tuple             # the recorded offered QoS profiles (rosbags Qos)


class _RosbagsSource:
    """An intact bag folder or storage file, read by rosbags."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        try:
            self._reader = Reader(path)
            self._reader.open()
        except Exception as error:  # rosbags raises ReaderError, OSError or worse on junk
            raise BagError(f'{path}: cannot read the bag: {_text(error)}') from None
        self.topics = {}
        for name, info in self._reader.topics.items():
            conn = info.connections[0]
            self.topics[name] = Topic(name, info.msgtype or conn.msgtype, info.msgcount,
                                      info.msgdef.data, conn.digest,
                                      tuple(getattr(conn.ext, 'offered_qos_profiles', ())))

    def messages(self, names) -> Iterator[Tuple[str, int, bytes]]:
        conns = [c for c in self._reader.connections if c.topic in names]
        if not conns:
            return
        for conn, time, data in self._reader.messages(conns):
            yield conn.topic, time, data

    def close(self) -> None:
        self._reader.close()


class _McapStreamSource:
    """An mcap file without a valid summary or footer, read record by record."""

    def __init__(self, path: pathlib.Path, why: str):
        from mcap.records import Channel, Message, Schema
        self.path, self.why = path, why
        self._types = (Channel, Message, Schema)
        schemas, self._channels, counts = {}, {}, {}
        self.damage = None
        try:
            for record in self._records():
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    self._channels[record.id] = (record, schemas.get(record.schema_id))
                elif isinstance(record, Message):
                    counts[record.channel_id] = counts.get(record.channel_id, 0) + 1
        except Exception as error:  # the first damaged record ends the readable part
            self.damage = _text(error)
        if not self._channels:
            raise BagError(f'{why}; no complete topic record before the damage'
                           + (f' ({self.damage})' if self.damage else ''))
        self.topics = {}
        for cid, (channel, schema) in self._channels.items():
            msgtype = schema.name if schema else ''
            msgdef = schema.data.decode('utf-8', 'replace') if schema else ''
            self.topics[channel.topic] = Topic(channel.topic, msgtype, counts.get(cid, 0),
                                               msgdef, '', ())

    def _records(self):
        from mcap.stream_reader import StreamReader
        with open(self.path, 'rb') as stream:
            yield from StreamReader(stream, skip_magic=False).records

    def messages(self, names) -> Iterator[Tuple[str, int, bytes]]:
        message_type = self._types[1]
        wanted = {cid for cid, (channel, _) in self._channels.items() if channel.topic in names}
        for record in self._records():
            if isinstance(record, message_type) and record.channel_id in wanted:
                yield self._channels[record.channel_id][0].topic, record.log_time, record.data

    def close(self) -> None:
        pass


class _SqliteSalvageSource:
    """A .db3 file that SQLite refuses to open, read row by row up to the damage.

    A file cut short still says in its header how many pages it had; SQLite then calls it
    malformed before reading anything. Reading the header with that field zeroed makes
    SQLite size the database by the file instead (the SQLite file format allows it), and
    every complete row before the cut stays readable.
    """

    def __init__(self, path: pathlib.Path, why: str):
        import apsw
        self.path, self.why = path, why
        try:
            _register_salvage_vfs()
            self._db = apsw.Connection(f'file:{path}?immutable=1', vfs=_SALVAGE_VFS,
                                       flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
            rows = list(self._db.execute('SELECT id, name, type, type_description_hash '
                                         'FROM topics'))
            try:
                defs = dict(self._db.execute('SELECT topic_type, encoded_message_definition '
                                             'FROM message_definitions'))
            except apsw.Error:  # older bags have no definitions table
                defs = {}
        except apsw.Error as error:
            raise BagError(f'{why}; its topic table is not readable either ({error})') from None
        self._names = {cid: name for cid, name, _, _ in rows}
        self.topics = {name: Topic(name, msgtype, None, defs.get(msgtype, ''), digest or '', ())
                       for _, name, msgtype, digest in rows}

    def messages(self, names) -> Iterator[Tuple[str, int, bytes]]:
        ids = [cid for cid, name in self._names.items() if name in names]
        if not ids:
            return
        query = ('SELECT topic_id, timestamp, data FROM messages WHERE topic_id IN '
                 f'({",".join("?" * len(ids))}) ORDER BY id')
        for cid, time, data in self._db.execute(query, ids):
            yield self._names[cid], time, data

    def close(self) -> None:
        self._db.close()


_SALVAGE_VFS = 'tipsv2_bag_salvage'
_salvage_vfs = []


def _register_salvage_vfs() -> None:
    """Register (once) an SQLite VFS that reads the header's page count as unknown (0)."""
    if _salvage_vfs:
        return
    import apsw

    class SalvageFile(apsw.VFSFile):
        def xRead(self, amount, offset):  # noqa: N802 (SQLite's name)
            data = super().xRead(amount, offset)
            if offset <= 28 < offset + amount:  # bytes 28-31: the database size in pages
                at = 28 - offset
                data = data[:at] + bytes(4) + data[at + 4:]
            return data

    class SalvageVFS(apsw.VFS):
        def __init__(self):
            super().__init__(_SALVAGE_VFS, '')

        def xOpen(self, name, flags):  # noqa: N802 (SQLite's name)
            return SalvageFile('', name, flags)

    _salvage_vfs.append(SalvageVFS())


class InputBag:
    """The topics of an input bag and a message stream that stops cleanly at damage.

    Attributes:
        path: what the user named.
        topics: {name: Topic}.
        notes: what was noticed on opening (e.g. a missing metadata.yaml).
        stopped: None, or where and why the last ``messages`` stream ended early.
    """

    def __init__(self, path: pathlib.Path, sources: List, notes: Sequence[str] = ()):
        self.path, self._sources, self.notes = path, sources, list(notes)
        self.topics: Dict[str, Topic] = {}
        for source in sources:
            for name, topic in source.topics.items():
                known = self.topics.get(name)
                if known is not None and known.count is not None and topic.count is not None:
                    topic = topic._replace(count=known.count + topic.count)
                self.topics[name] = topic
        self.stopped: Optional[str] = None

    def messages(self, names) -> Iterator[Tuple[str, int, bytes]]:
        """Yield (topic, receive time in ns, CDR bytes) of ``names``, in recorded order."""
        self.stopped = None
        names = set(names)
        if not names:
            return
        count, first, last = 0, None, None
        for source in self._sources:
            try:
                for topic, time, data in source.messages(names):
                    count += 1
                    first = time if first is None else first
                    last = time
                    yield topic, time, data
            except Exception as error:  # damage mid-file: everything before it was delivered
                where = (f'after {count} messages, {(last - first) / 1e9:.3f} s into the '
                         f'recording (receive time {last} ns)' if count else
                         'before its first message')
                self.stopped = f'{source.path}: reading stopped {where}: {_text(error)}'
                return

    def close(self) -> None:
        for source in self._sources:
            source.close()


def storage_files(folder: pathlib.Path) -> List[pathlib.Path]:
    """Return the storage files of a bag folder, in recording order (by name)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix in STORAGE_SUFFIXES)


def open_bag(path) -> InputBag:
    """Open a bag folder, .mcap or .db3 file, damaged or not.

    Raises:
        BagError: nothing of it can be read; the message says why.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise BagError(f'{path}: no such bag (expected a bag folder, a .mcap or a .db3 file)')
    if path.is_file():
        if path.suffix not in STORAGE_SUFFIXES:
            raise BagError(f'{path}: not a bag: expected a bag folder, a .mcap or a .db3 file')
        source = _open_file(path)
        return InputBag(path, [source], _damage_notes([source]))
    try:
        files = storage_files(path)
    except OSError as error:
        raise BagError(f'{path}: cannot read the folder: {_text(error)}') from None
    if (path / 'metadata.yaml').is_file():
        try:
            return InputBag(path, [_RosbagsSource(path)])
        except BagError as error:
            if not files:
                raise
            note = f'{error}; reading its storage files directly'
    elif files:
        note = (f'{path} has no metadata.yaml (was the recording stopped before it closed?); '
                'reading its storage files directly')
    else:
        raise BagError(f'{path}: not a bag: no metadata.yaml and no .mcap or .db3 file in it')
    sources = [_open_file(f) for f in files]
    return InputBag(path, sources, [note] + _damage_notes(sources))


def _open_file(path: pathlib.Path):
    try:
        return _RosbagsSource(path)
    except BagError as error:
        # A recording cut short: its complete records are still readable.
        if path.suffix == '.mcap':
            return _McapStreamSource(path, str(error))
        return _SqliteSalvageSource(path, str(error))


def _damage_notes(sources) -> List[str]:
    return [f'{s.why}: reading {s.path.name} record by record up to the damage'
            for s in sources if isinstance(s, (_McapStreamSource, _SqliteSalvageSource))]


def _text(error: BaseException) -> str:
    return str(error) or type(error).__name__
