# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The class names of the released (closed-vocabulary, ADE20K) segmentation head.

Mirrors the segmentation cell of tips/pytorch/TIPS_decoder_inference.ipynb@4db271d: the head's
logits are upsampled bilinearly to the output size and the argmax there is the class (the
pipeline does it with ``zero_shot.label_map``, the ``ade20k`` task's ``resize='classes'``). The
150 class names ship as data (``assets/ade20k_classes.txt``, the notebook's list).
"""
import functools
import pathlib

CLASSES_FILE = pathlib.Path(__file__).with_name('assets') / 'ade20k_classes.txt'


@functools.lru_cache(maxsize=1)
def ade20k_classes() -> tuple[str, ...]:
    """Return the 150 ADE20K class names, index = the head's output channel."""
    lines = CLASSES_FILE.read_text(encoding='utf-8').splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith('#'))


def class_names(num_classes: int) -> tuple[str, ...]:
    """Return the names of a head's classes: ADE20K's for 150, else ``class 0``, ..."""
    names = ade20k_classes()
    if num_classes == len(names):
        return names
    return tuple(f'class {i}' for i in range(num_classes))
