# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``tipsv2 infer IMAGE...``: depth, normals and open-vocabulary segmentation of image files.

Writes ``<image>_depth.png``, ``<image>_normals.png`` and ``<image>_segmentation.png`` (and
``<image>_ade20k.png`` with ``--segmentation-head``, the ADE20K head's classes) into
``--out``; with ``--query PHRASE`` also ``<image>_query_<phrase>.png``, the phrase's heatmap
(its probability against the labels plus the phrase) over the image. Weights come from
``tipsv2 download`` (``--variant``) or explicit files; the tasks follow the files given (no
depth head, no depth). ``--save-raw FILE.npz`` writes every
raw array of the first image under the key names of the golden reference set.

``--zero-shot-mode slide`` segments with the official sliding windows (``--window`` pixels
every ``--stride`` pixels) over the image resized to ``--input-size`` when given, else with
its short side resized to the window; ``--save-raw`` then adds ``zeroshot_slide_probs``.
"""
import argparse
import pathlib
import sys

from tipsv2_ros.cli.options import add_weight_options, runtime_config


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'infer', help='run on image files and write PNG views', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('images', nargs='+', metavar='IMAGE', help='image files')
    add_weight_options(parser)
    parser.add_argument('--labels', default='floor,wall,ceiling,person,door,table,chair',
                        help='comma-separated open-vocabulary labels')
    parser.add_argument('--templates', metavar='FILE',
                        help='prompt templates, one per line with {} for the label '
                        '(default: the 9 official TIPS templates)')
    parser.add_argument('--query', action='append', default=[], metavar='PHRASE',
                        help='also write the heatmap view of this phrase, e.g. "fire '
                        'extinguisher" (repeatable; the labels stay as given)')
    parser.add_argument('--threshold', type=float, default=0.0,
                        help='confidence below which a pixel gets no label')
    parser.add_argument('--output-resolution', choices=('input', 'model'), default='input',
                        help='views at the image size (default) or the decoder size')
    parser.add_argument('--out', default='tipsv2_infer', help='output folder')
    parser.add_argument('--save-raw', metavar='FILE.npz',
                        help='also write the raw arrays of the first image')
    parser.add_argument('--zero-shot-mode', choices=('whole', 'slide'), default='whole',
                        help='zero-shot segmentation of the whole image at once (default) or '
                        'by sliding windows, the official recipe (slower, finer)')
    parser.add_argument('--window', type=int, default=448,
                        help='sliding-window side in pixels (slide mode)')
    parser.add_argument('--stride', type=int, default=336,
                        help='pixels between sliding windows (slide mode)')
    # None tells an explicit --input-size (the frame size for the windows) from the default.
    parser.set_defaults(func=run, input_size=None)


def _templates(path):
    from tipsv2_ros.model.zero_shot import TEMPLATES
    if not path:
        return list(TEMPLATES)
    lines = [line.strip() for line in pathlib.Path(path).read_text().splitlines()]
    return [line for line in lines if line and not line.startswith('#')]


def run(args) -> int:
    import numpy as np
    from PIL import Image

    from tipsv2_ros.cli import views
    from tipsv2_ros.model.ade20k import class_names
    from tipsv2_ros.model.reference import raw_outputs, raw_slide_outputs
    from tipsv2_ros.runtime import startup
    from tipsv2_ros.runtime.config import ZeroShotConfig
    from tipsv2_ros.runtime.frame import processing
    from tipsv2_ros.runtime.frame.labels import LabelError, validate_phrases
    from tipsv2_ros.tasks import REGISTRY, ZERO_SHOT

    explicit_size, args.input_size = args.input_size, args.input_size or '448'
    try:
        config = runtime_config(args)
        if args.segmentation_head and 'ade20k' not in config.tasks and \
                args.backend in ('torch', 'auto'):  # the ADE20K head's view (torch only)
            config = config.replace(tasks=(*config.tasks, 'ade20k'))
        config = config.replace(zero_shot=ZeroShotConfig(
            args.zero_shot_mode, args.window, args.stride, explicit_size or None))
        if args.save_raw:  # the raw arrays are the fp32 reference, text embeddings included
            config = config.replace(text_precision='fp32')
        # --save-raw runs the PyTorch model beside the backend: it keeps it on the device.
        runtime = startup.build(config, log=lambda text: print(f'[infer] {text}'),
                                keep_torch=bool(args.save_raw))
        templates = _templates(args.templates)
        label_set = None
        if any(REGISTRY[t].kind == ZERO_SHOT for t in runtime.backend.tasks):
            label_set = runtime.labels.build(args.labels.split(','), templates)
        phrases = validate_phrases(args.query) if args.query else ()
        if phrases and label_set is None:
            raise ValueError('--query needs the text weights and tokenizer (segmentation)')
    except (startup.StartupError, LabelError, ValueError, OSError) as error:
        print(f'tipsv2 infer: error: {error}', file=sys.stderr)
        return 1
    out = pathlib.Path(args.out)
    tasks = runtime.backend.tasks
    for index, path in enumerate(args.images):
        try:
            frame = np.asarray(Image.open(path).convert('RGB'))
        except OSError as error:
            print(f'tipsv2 infer: skipping {path}: {error}', file=sys.stderr)
            continue
        result = runtime.pipeline.run([frame], tasks, label_set, args.output_resolution,
                                      args.threshold, keep_features=bool(phrases))[0]
        names = label_set.names if label_set else ()
        rendered = views.render(frame, result.depth, result.normals, result.labels, names,
                                ade20k_labels=result.ade20k_labels, ade20k_names=class_names(
                                    runtime.model.config.dpt.segmentation_classes))
        written = views.save(out, pathlib.Path(path).stem, rendered)
        if phrases:
            written += views.save_queries(out, pathlib.Path(path).stem, frame, result,
                                          runtime, phrases)
        print(f'[infer] {path}: ' + ', '.join(str(p) for p in written))
        if index == 0 and args.save_raw:
            pixels = processing.to_pixel_values(frame, runtime.backend.input_size,
                                                runtime.backend.device)
            arrays = raw_outputs(runtime.model, pixels, names, templates)
            slide = runtime.pipeline.slide
            if slide is not None and label_set is not None:
                pixels = processing.to_pixel_values(frame, slide.slide_size(frame.shape[:2]),
                                                    runtime.backend.device, 'bicubic')
                arrays.update(raw_slide_outputs(runtime.model, pixels, label_set.classifier,
                                                slide.window, slide.stride))
            arrays.update(image=frame, labels=np.array(names), templates=np.array(templates))
            np.savez(args.save_raw, **arrays)
            print(f'[infer] raw arrays of {path}: {args.save_raw} ({len(arrays)} arrays)')
    runtime.close()
    return 0
