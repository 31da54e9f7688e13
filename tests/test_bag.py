# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2 bag`` as a user runs it, its output read back by independent readers.

mcap output: the ``mcap`` reader with the ``mcap-ros2-support`` decoder (which decodes from
the definitions stored in the file, knowing nothing of this package). sqlite3 output: the
sqlite3 module for the tables and the ``rosbags`` deserialiser for the messages.
"""
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from bag_helpers import FRONT, FRONT_INFO, OTHER, REAR, write_bag
import numpy as np
import pytest

pytestmark = pytest.mark.ros

LABELS = ['floor', 'wall', 'person']
IMAGE_OUTPUTS = {'depth/image': '32FC1', 'normals/image': '32FC3',
                 'segmentation/labels': 'mono8', 'segmentation/confidence': 'mono8'}
COLOURED = ('depth/colored', 'normals/colored', 'segmentation/colored')


def bag_command(tiny_params, source, output, *extra):
    command = [sys.executable, '-m', 'tipsv2_ros.cli.main', 'bag', str(source), str(output),
               '--params-file', '', '--no-progress', '--labels', ','.join(LABELS)]
    for name, value in tiny_params.items():
        command += ['-p', f'{name}:={json.dumps(value)}']
    return command + list(extra)


def run_bag(tiny_params, source, output, *extra, timeout=300):
    return subprocess.run(bag_command(tiny_params, source, output, *extra),
                          capture_output=True, text=True, timeout=timeout)


def read_mcap(path):
    """Return {topic: [(log_time, decoded message, schema name)]} via mcap + mcap_ros2."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    found = {}
    with open(path, 'rb') as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            found.setdefault(channel.topic, []).append((message.log_time, decoded, schema.name))
    return found


def stamp(msg):
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


@pytest.fixture(scope='module')
def recorded(tmp_path_factory):
    folder = tmp_path_factory.mktemp('bags')
    return {storage: write_bag(folder / f'in_{storage}', storage)
            for storage in ('mcap', 'sqlite3')}


@pytest.fixture(scope='module')
def mcap_run(recorded, tiny_params, tmp_path_factory):
    """Run mcap in, mcap out, one frame per batch, every optional output and every topic."""
    out = tmp_path_factory.mktemp('out') / 'processed'
    result = run_bag(tiny_params, recorded['mcap'].path, out, '--batch', '1', '--colored',
                     '--points', '--copy-all')
    assert result.returncode == 0, result.stderr
    return out, result


def test_mcap_output_has_every_topic_with_the_input_headers(recorded, mcap_run):
    out, result = mcap_run
    rec = recorded['mcap']
    got = read_mcap(out / 'processed.mcap')
    outputs = [*IMAGE_OUTPUTS, *COLOURED, 'segmentation/label_info']
    assert set(got) == {*(f'{p}/{n}' for p in ('/front', '/rear') for n in outputs),
                        '/front/depth/camera_info', '/front/depth/points',
                        FRONT, FRONT_INFO, REAR, OTHER}
    for prefix, topic, frames in (('/front', FRONT, 6), ('/rear', REAR, 3)):
        inputs = [m for m in rec.frames[topic] if getattr(m, 'encoding', '') != '32FC1']
        times = [t for m, t in zip(rec.frames[topic], rec.times[topic])
                 if getattr(m, 'encoding', '') != '32FC1']
        assert len(inputs) == frames
        for name in [*IMAGE_OUTPUTS, *COLOURED]:
            messages = got[f'{prefix}/{name}']
            assert len(messages) == frames, name
            # Written at the input's receive time, with the input's header.
            assert [t for t, _, _ in messages] == times, name
            assert [stamp(m) for _, m, _ in messages] == [stamp(m) for m in inputs], name
            assert {m.header.frame_id for _, m, _ in messages} == {inputs[0].header.frame_id}
            for _, msg, schema in messages:
                assert schema == 'sensor_msgs/msg/Image'
                assert (msg.height, msg.width) == (64, 64)  # 8 px per patch at 112
                assert msg.encoding == IMAGE_OUTPUTS.get(name, 'rgb8'), name
                assert len(msg.data) == msg.step * msg.height
        labels = got[f'{prefix}/segmentation/label_info']
        assert len(labels) == 1 and labels[0][2] == 'tipsv2_ros/msg/LabelInfo'
        info = labels[0][1]
        assert list(info.class_names) == LABELS and list(info.class_ids) == [0, 1, 2]
        assert len(info.templates) == 9 and stamp(info) == stamp(inputs[0])
    # camera_info exists for the front camera only: depth/camera_info and points there.
    assert len(got['/front/depth/camera_info']) == 6 and '/rear/depth/camera_info' not in got
    cloud = got['/front/depth/points'][0][1]
    assert (cloud.height, cloud.width) == (64, 64)
    # The node's cloud: with segmentation running it carries rgb, label and confidence too.
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb', 'label', 'confidence']
    assert cloud.point_step == 32 and len(cloud.data) == 64 * 64 * 32
    scaled = got['/front/depth/camera_info'][0][1]
    assert (scaled.width, scaled.height) == (64, 64)
    np.testing.assert_allclose(scaled.k[0], 300.0 * 64 / 80)
    # --copy-all: every input topic, byte for byte the recorded messages.
    for topic in (FRONT, FRONT_INFO, REAR, OTHER):
        assert len(got[topic]) == len(rec.frames[topic]), topic
    assert got[OTHER][0][1].data == 'hello'
    # The unsupported frame is reported once, and counted.
    assert result.stderr.count("unsupported image encoding '32FC1'") == 2, result.stderr
    assert 'skipped 1 frame(s)' in result.stderr
    depth = np.frombuffer(bytes(got['/front/depth/image'][0][1].data), np.float32)
    assert np.isfinite(depth).all() and (depth > 0).all()
    labels = np.frombuffer(bytes(got['/front/segmentation/labels'][0][1].data), np.uint8)
    assert set(np.unique(labels)) <= {0, 1, 2, 255}


def test_sqlite3_output_read_with_sqlite3_and_rosbags(recorded, tiny_params, tmp_path):
    from rosbags.typesys import get_types_from_msg, get_typestore, Stores
    out = tmp_path / 'processed'
    result = run_bag(tiny_params, recorded['sqlite3'].path, out, '--storage', 'sqlite3',
                     '--image', FRONT, '--copy-input')
    assert result.returncode == 0, result.stderr
    db = sqlite3.connect(out / 'processed.db3')
    topics = dict(db.execute('SELECT name, type FROM topics'))
    assert topics == {
        '/front/depth/image': 'sensor_msgs/msg/Image',
        '/front/normals/image': 'sensor_msgs/msg/Image',
        '/front/segmentation/labels': 'sensor_msgs/msg/Image',
        '/front/segmentation/confidence': 'sensor_msgs/msg/Image',
        '/front/segmentation/label_info': 'tipsv2_ros/msg/LabelInfo',
        '/front/depth/camera_info': 'sensor_msgs/msg/CameraInfo',
        FRONT: 'sensor_msgs/msg/Image', FRONT_INFO: 'sensor_msgs/msg/CameraInfo'}
    counts = dict(db.execute('SELECT topics.name, COUNT(*) FROM messages JOIN topics ON '
                             'messages.topic_id = topics.id GROUP BY topics.name'))
    assert counts == {**dict.fromkeys(topics, 6), '/front/segmentation/label_info': 1, FRONT: 7}
    # Complete definitions: a type store built from the file alone decodes everything.
    definitions = dict(db.execute('SELECT topic_type, encoded_message_definition FROM '
                                  'message_definitions'))
    store = get_typestore(Stores.EMPTY)
    for msgtype, text in definitions.items():
        for part in text.split('=' * 80 + '\n'):
            name = msgtype if not part.startswith('MSG: ') else part.split('\n', 1)[0][5:]
            body = part if not part.startswith('MSG: ') else part.split('\n', 1)[1]
            name = name if '/msg/' in name else name.replace('/', '/msg/')
            store.register(get_types_from_msg(body, name))
    rec = recorded['sqlite3']
    inputs = {stamp(m): (m, t) for m, t in zip(rec.frames[FRONT], rec.times[FRONT])}
    infos = {stamp(m): (m, t) for m, t in zip(rec.frames[FRONT_INFO], rec.times[FRONT_INFO])}
    rows = db.execute('SELECT topics.name, topics.type, messages.timestamp, messages.data '
                      'FROM messages JOIN topics ON messages.topic_id = topics.id')
    for name, msgtype, timestamp, data in rows:
        msg = store.deserialize_cdr(data, msgtype)
        # Outputs at their frame's receive time; the copied camera_info at its own.
        source, time_ns = (infos if name == FRONT_INFO else inputs)[stamp(msg)]
        assert timestamp == time_ns, name
        if name.endswith('label_info'):  # as the node's: the stamp, no frame
            assert list(msg.class_names) == LABELS and msg.generation >= 1
            continue
        assert msg.header.frame_id == source.header.frame_id, name
        if name in ('/front/depth/image', '/front/normals/image'):
            assert msg.encoding == IMAGE_OUTPUTS[name[len('/front/'):]]
            assert (msg.height, msg.width) == (64, 64)


def test_outputs_equal_what_the_live_node_publishes(ros, recorded, mcap_run, tiny_params):
    from ros_helpers import Client, NodeProcess
    from sensor_msgs.msg import CameraInfo, Image
    out, _ = mcap_run
    got = read_mcap(out / 'processed.mcap')
    rec = recorded['mcap']
    sent_image, sent_info = rec.frames[FRONT][0], rec.frames[FRONT_INFO][0]
    topics = [*IMAGE_OUTPUTS, 'depth/camera_info']
    with NodeProcess({**tiny_params, 'labels': LABELS}, 'tbag') as node:
        client = Client('tbag', name='bag_parity_client')
        try:
            assert client.wait_for_node(60), node.stop() or node.output
            for topic in topics:
                client.listen(topic, CameraInfo if topic.endswith('camera_info') else Image)
            rgb = np.ndarray((sent_image.height, sent_image.width, 3), np.uint8,
                             bytes(sent_image.data))
            _, live = client.exchange(rgb, topics, stamp_ns=stamp(sent_image),
                                      frame_id=sent_image.header.frame_id, info=sent_info)
        finally:
            client.destroy_node()
    first = {name: next(m for _, m, _ in got[f'/front/{name}']
                        if stamp(m) == stamp(sent_image)) for name in topics}
    for name in IMAGE_OUTPUTS:
        assert bytes(first[name].data) == bytes(live[name].data), name
        assert first[name].encoding == live[name].encoding, name
        assert first[name].height == live[name].height, name
    assert list(first['depth/camera_info'].k) == list(live['depth/camera_info'].k)


def test_missing_bag_unknown_topic_and_existing_output(recorded, tmp_path, capsys):
    from tipsv2_ros.cli.main import main

    def run(*args):
        code = main(['bag', *map(str, args), '--params-file', '', '--no-progress'])
        return code, capsys.readouterr().err

    code, err = run(tmp_path / 'nothing', tmp_path / 'o1')
    assert code == 1 and 'no such bag' in err
    code, err = run(tmp_path, tmp_path / 'o1')
    assert code == 1 and 'not a bag' in err
    code, err = run(recorded['mcap'].path, tmp_path / 'o2', '--image', '/nope')
    assert code == 1 and 'no topic /nope' in err
    assert FRONT in err and REAR in err  # the image topics that exist
    code, err = run(recorded['mcap'].path, tmp_path / 'o2', '--image', OTHER)
    assert code == 1 and 'not an image' in err
    (tmp_path / 'o3').mkdir()
    (tmp_path / 'o3' / 'keep.txt').write_text('mine')
    code, err = run(recorded['mcap'].path, tmp_path / 'o3')
    assert code == 1 and '--overwrite' in err
    code, err = run(recorded['mcap'].path, tmp_path / 'o3', '--overwrite')
    assert code == 1 and (tmp_path / 'o3' / 'keep.txt').exists()
    code, err = run(recorded['mcap'].path, recorded['mcap'].path, '--overwrite')
    assert code == 1 and 'replace the input' in err
    assert (recorded['mcap'].path / 'metadata.yaml').exists()
    assert not list(tmp_path.glob('o[12]*'))  # nothing written on a refusal


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_truncated_bag_is_processed_up_to_the_damage(tiny_params, tmp_path, storage):
    suffix = {'mcap': '.mcap', 'sqlite3': '.db3'}[storage]
    rec = write_bag(tmp_path / 'long', storage, front_frames=60, rear_frames=0,
                    size=(120, 160))
    data = (rec.path / f'long{suffix}').read_bytes()
    cut = tmp_path / f'cut{suffix}'
    cut.write_bytes(data[:int(len(data) * 0.7)])
    result = run_bag(tiny_params, cut, tmp_path / 'out.mcap', '--tasks', 'depth')
    assert result.returncode == 0, result.stderr
    assert 'record by record up to the damage' in result.stderr
    assert 'reading stopped after' in result.stderr and 'Traceback' not in result.stderr
    got = read_mcap(tmp_path / 'out.mcap')
    frames = len(got['/front/depth/image'])
    assert 10 < frames < 60
    assert [stamp(m) for _, m, _ in got['/front/depth/image']] == [
        stamp(m) for m in rec.frames[FRONT][:frames]]


def test_ctrl_c_leaves_a_readable_partial_bag(tiny_params, tmp_path):
    rec = write_bag(tmp_path / 'many', 'mcap', front_frames=400, rear_frames=0)
    out = tmp_path / 'partial'
    command = [c for c in bag_command(tiny_params, rec.path, out, '--batch', '1', '--tasks',
                                      'depth') if c != '--no-progress']
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stderr.read(1), '')))
    reader.start()
    end = time.monotonic() + 240
    # The progress bar (frames done / 401 recorded) says when a few frames are through.
    while time.monotonic() < end and not re.search(r'\| *([3-9]|\d\d+)/401 ', ''.join(seen)):
        assert proc.poll() is None, ''.join(seen)
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    reader.join(10)
    text = ''.join(seen)
    assert proc.returncode == 130, text
    got = read_mcap(out / 'partial.mcap')
    frames = len(got['/front/depth/image'])
    assert 3 <= frames < 400
    assert f'first {frames} frames' in text and 'Traceback' not in text
    assert os.path.exists(out / 'metadata.yaml')


def test_a_folder_without_metadata_is_read_from_its_storage_file(recorded, tmp_path):
    import shutil

    from tipsv2_ros.ros.bag_input import open_bag
    folder = tmp_path / 'unclosed'
    shutil.copytree(recorded['sqlite3'].path, folder)
    (folder / 'metadata.yaml').unlink()  # a recorder killed before it closed the bag
    bag = open_bag(folder)
    try:
        assert 'no metadata.yaml' in bag.notes[0]
        assert bag.topics[FRONT].msgtype == 'sensor_msgs/msg/Image'
        got = [time for _, time, _ in bag.messages({FRONT})]
        assert got == recorded['sqlite3'].times[FRONT] and bag.stopped is None
    finally:
        bag.close()


def test_compressed_frames_png_16_bit_and_depth_formats():
    import io

    from PIL import Image as PILImage
    from sensor_msgs.msg import CompressedImage

    from tipsv2_ros.ros import bag_types
    from tipsv2_ros.ros.bag_cameras import decode_frame
    from tipsv2_ros.ros.image_decode import ImageConversionError
    grey = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    buffer = io.BytesIO()
    PILImage.fromarray(grey).save(buffer, format='PNG')
    msg = CompressedImage(format='mono16; png compressed', data=buffer.getvalue())
    rgb = decode_frame(msg, bag_types.COMPRESSED_IMAGE)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], grey >> 8)  # the high byte, as for mono16
    depth = CompressedImage(format='16UC1; compressedDepth png', data=buffer.getvalue())
    with pytest.raises(ImageConversionError, match='depth data'):
        decode_frame(depth, bag_types.COMPRESSED_IMAGE)
    with pytest.raises(ImageConversionError, match='cannot be decoded'):
        decode_frame(CompressedImage(format='jpeg', data=b'not a jpeg'),
                     bag_types.COMPRESSED_IMAGE)
