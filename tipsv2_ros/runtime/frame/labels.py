# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Open-vocabulary label sets: validation, cached text embeddings and the atomic swap unit.

Text encoding runs only when labels change, never per frame, and each (label, templates)
embedding is computed once: re-setting known labels costs a dictionary lookup and a stack.
"""
import collections
import threading
from typing import Callable, Iterable, NamedTuple, Sequence, Tuple

import torch

from tipsv2_ros.model.tokenizer import normalise

# mono8 label images reserve 255 for "no label".
MAX_LABELS = 255
MAX_LABEL_CHARS = 200
MAX_TEMPLATES = 64
# Phrases of one query: each is one row of the query's matrix product and one heatmap.
MAX_QUERY_PHRASES = 16


class LabelError(ValueError):
    """A label or template list was refused; the message says why."""


class LabelSet(NamedTuple):
    """One immutable label state; the node swaps whole LabelSets, never their parts."""

    names: Tuple[str, ...]
    templates: Tuple[str, ...]
    classifier: torch.Tensor  # (C, D) L2-normalised, on the inference device
    generation: int


def _check_text(kind: str, text: str) -> str:
    if not isinstance(text, str):
        raise LabelError(f'{kind} {text!r} is not a string')
    if any(not ch.isprintable() for ch in text):
        raise LabelError(f'{kind} {text[:40]!r} contains control characters (tabs, newlines...)')
    stripped = ' '.join(text.split())
    if not stripped:
        raise LabelError(f'{kind}s must not be empty or blank')
    if len(stripped) > MAX_LABEL_CHARS:
        raise LabelError(f'{kind} {stripped[:40]!r}... has {len(stripped)} characters; '
                         f'at most {MAX_LABEL_CHARS} are allowed')
    return stripped


def validate_labels(labels: Iterable[str]) -> Tuple[str, ...]:
    """Return the cleaned labels (whitespace collapsed) or raise LabelError saying why."""
    labels = _check_count(labels, 'label', MAX_LABELS,
                          'the mono8 label image holds at most {} (255 means no label)')
    cleaned = tuple(_check_text('label', label) for label in labels)
    # The tokenizer lower-cases ASCII letters, so labels equal after that are the same class;
    # labels differing in the case of other letters tokenise differently and are distinct.
    seen = {}
    for label in cleaned:
        key = normalise(label)
        if key in seen:
            raise LabelError(f'duplicate label {label!r} (same as {seen[key]!r})')
        seen[key] = label
    return cleaned


def validate_phrases(phrases: Iterable[str]) -> Tuple[str, ...]:
    """Return the cleaned query phrases (whitespace collapsed) or raise LabelError saying why.

    The rules of labels (not blank, printable, at most MAX_LABEL_CHARS), at most
    MAX_QUERY_PHRASES; a repeated phrase is allowed (it gets its own, equal heatmap).
    """
    phrases = _check_count(phrases, 'phrase', MAX_QUERY_PHRASES, 'a query takes at most {}')
    return tuple(_check_text('phrase', phrase) for phrase in phrases)


def _check_count(items: Iterable[str], what: str, limit: int, why: str) -> list:
    """Return ``items`` as a list; raise LabelError when there are none or more than limit."""
    items = list(items)
    if not items:
        raise LabelError(f'the {what} list is empty; give at least one {what}')
    if len(items) > limit:
        raise LabelError(f'{len(items)} {what}s given; {why.format(limit)}')
    return items


def validate_templates(templates: Iterable[str]) -> Tuple[str, ...]:
    """Return the cleaned prompt templates or raise LabelError saying why."""
    templates = list(templates)
    if not templates:
        raise LabelError('the template list is empty; give at least one, e.g. "a photo of a {}."')
    if len(templates) > MAX_TEMPLATES:
        raise LabelError(f'{len(templates)} templates given; at most {MAX_TEMPLATES}')
    cleaned = tuple(_check_text('template', t) for t in templates)
    for template in cleaned:
        if template.count('{}') != 1 or template.replace('{}', '').count('{') \
                or template.replace('{}', '').count('}'):
            raise LabelError(f'template {template!r} must contain exactly one {{}} and no '
                             f'other braces')
    if len(set(cleaned)) != len(cleaned):
        raise LabelError('duplicate templates')
    return cleaned


class LabelBank:
    """Computes label classifiers with a per-(label, templates) embedding cache.

    Args:
        encode: maps (labels, templates) to (C, D) L2-normalised class embeddings (the
            official recipe: per-template normalise, average, normalise).
        capacity: the most cached embeddings kept (least recently used go first).
    """

    def __init__(self, encode: Callable[[Sequence[str], Sequence[str]], torch.Tensor],
                 capacity: int = 4096):
        self._encode = encode
        self._cache = collections.OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()
        self._generation = 0

    def build(self, labels: Iterable[str], templates: Iterable[str]) -> LabelSet:
        """Validate and embed ``labels``; raise LabelError for a bad request."""
        names = validate_labels(labels)
        templates = validate_templates(templates)
        rows = self._rows(names, templates)
        with self._lock:
            self._generation += 1
            generation = self._generation
        return LabelSet(names, templates, torch.stack(rows), generation)

    def embed(self, names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """Return the (N, D) class embeddings of already validated ``names``.

        The same cache as `build` (a phrase queried once costs a lookup the next time, and a
        query for an active label costs nothing), but no LabelSet and no new generation.
        """
        return torch.stack(self._rows(tuple(names), tuple(templates)))

    def _rows(self, names: Tuple[str, ...], templates: Tuple[str, ...]) -> list:
        with self._lock:
            # One encoding per distinct text: texts equal after the tokenizer's normalisation
            # (ASCII lower-casing) are the same text.
            missing = {}
            for name in names:
                if (normalise(name), templates) not in self._cache:
                    missing.setdefault(normalise(name), name)
            missing = list(missing.values())
        if missing:
            with torch.inference_mode():
                fresh = self._encode(missing, templates)
            with self._lock:
                for name, row in zip(missing, fresh):
                    self._cache[(normalise(name), templates)] = row
        with self._lock:
            rows = []
            for name in names:
                key = (normalise(name), templates)
                self._cache.move_to_end(key)
                rows.append(self._cache[key])
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return rows

    def cached(self, labels: Iterable[str], templates: Iterable[str]) -> bool:
        """Whether every label's embedding is already cached for these templates."""
        templates = tuple(templates)
        with self._lock:
            return all((normalise(n), templates) in self._cache for n in labels)
