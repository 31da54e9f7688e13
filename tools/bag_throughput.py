# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Throughput of ``tipsv2 bag``: frames/s, and its cost over the bare frame path.

Records a bag of synthetic rgb8 frames (one camera with camera_info), then, in one process
and alternating to cancel drift on a shared machine: (a) the whole ``tipsv2 bag`` job
(read, decode, infer, build and write every output) and (b) ``Pipeline.run`` alone on the
same frames in the same batches. Prints frames/s of each and their ratio (a / b: 1.00 means
the bag adds nothing to inference). Random weights of the named size (``tiny``, ``b14``...).

Usage: python tools/bag_throughput.py [--config tiny] [--input-size 112] [--frames 20]
       [--batch 4] [--size 480x640] [--rounds 2] [--work /tmp/tipsv2_bag_throughput]
"""
import argparse
import pathlib
import shutil
import time

import numpy as np


def record(path: pathlib.Path, frames: int, height: int, width: int) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from sensor_msgs.msg import CameraInfo

    from tipsv2_ros.ros import bag_types, conversions
    store = bag_types.typestore()
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    image_conn = writer.add_connection('/cam/image_raw', bag_types.IMAGE, typestore=store)
    info_conn = writer.add_connection('/cam/camera_info', bag_types.CAMERA_INFO,
                                      typestore=store)
    rng = np.random.default_rng(0)
    for i in range(frames):
        t = 10**18 + i * 10**8
        msg = conversions.array_to_image(
            rng.integers(0, 255, (height, width, 3), dtype=np.uint8), 'rgb8')
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, 10**9)
        msg.header.frame_id = 'cam'
        info = CameraInfo(header=msg.header, width=width, height=height,
                          k=[300.0, 0, width / 2, 0, 300.0, height / 2, 0, 0, 1],
                          p=[300.0, 0, width / 2, 0, 0, 300.0, height / 2, 0, 0, 0, 1, 0])
        writer.write(image_conn, t, bag_types.serialize(msg))
        writer.write(info_conn, t + 1, bag_types.serialize(info))
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default='tiny')
    parser.add_argument('--input-size', default='112')
    parser.add_argument('--frames', type=int, default=20)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--size', default='480x640', help='frame HxW')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--work', default='/tmp/tipsv2_bag_throughput')
    args = parser.parse_args()

    from tipsv2_ros.model import random_weights
    from tipsv2_ros.ros import bag_types
    from tipsv2_ros.ros.bag_input import open_bag
    from tipsv2_ros.ros.bag_perception import Options, run_bag
    from tipsv2_ros.ros.image_decode import image_to_rgb
    from tipsv2_ros.runtime import factory

    work = pathlib.Path(args.work)
    weights = work / f'weights_{args.config}'
    if not (weights / 'vision.npz').exists():
        random_weights.write_random_checkpoint(weights, args.config, seed=0)
    height, width = (int(v) for v in args.size.split('x'))
    source = work / f'bag_{args.frames}_{height}x{width}'
    if not source.exists():
        record(source, args.frames, height, width)
    values = {'model.vision_weights': str(weights / 'vision.npz'),
              'model.text_weights': str(weights / 'text.npz'),
              'model.tokenizer': str(weights / 'tokenizer.model'),
              'model.depth_head': str(weights / 'depth_dpt.zip'),
              'model.normals_head': str(weights / 'normals_dpt.zip'),
              'model.input_size': args.input_size, 'backend': 'torch',
              'labels': ['floor', 'wall', 'person']}
    options = Options(overrides=values, batch=args.batch)

    bag = open_bag(source)
    frames = [image_to_rgb(bag_types.deserialize(data, bag_types.IMAGE))
              for _, _, data in bag.messages({'/cam/image_raw'})]
    bag.close()
    runtime = factory.build(values, log=lambda text: None)
    label_set = runtime.labels.build(values['labels'], ['a photo of a {}.'])
    tasks = runtime.backend.tasks
    bag_fps, path_fps = [], []
    for _ in range(args.rounds):
        out = work / 'out'
        shutil.rmtree(out, ignore_errors=True)
        summary = run_bag(source, out, options, lambda text: None,
                          lambda total: (lambda n: None), lambda: False)
        bag_fps.append(summary.processed / summary.seconds)
        start = time.perf_counter()
        for i in range(0, len(frames), args.batch):
            runtime.pipeline.run(frames[i:i + args.batch], tasks, label_set)
        path_fps.append(len(frames) / (time.perf_counter() - start))
    runtime.close()
    bag_rate, path_rate = max(bag_fps), max(path_fps)
    print(f'{args.config} at {args.input_size}, {args.frames} frames {width}x{height} rgb8, '
          f'batch {args.batch}: tipsv2 bag {bag_rate:.2f} frames/s; Pipeline.run alone '
          f'{path_rate:.2f} frames/s; bag / bare path time = {path_rate / bag_rate:.2f}')


if __name__ == '__main__':
    main()
