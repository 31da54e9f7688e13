# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""SentencePiece tokenizer with the official TIPS semantics, without TensorFlow.

Mirrors tips/pytorch/text_encoder.py@4db271d (``Tokenizer.tokenize``): lower-case the text,
SentencePiece ids with no BOS/EOS, right-pad with id 0 to ``max_len`` (or truncate), and mark
padding as ``ids == 0``.
"""
import os
from typing import NamedTuple, Sequence, Union

import sentencepiece
import torch

# ``tf.strings.lower`` with its default encoding lower-cases ASCII only; so do we, so that
# non-ASCII text tokenises exactly as in the official pipeline.
_ASCII_LOWER = str.maketrans('ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')


def normalise(text: str) -> str:
    """Fold case as the tokenizer does: ASCII letters only (``'ÄPFEL'`` -> ``'Äpfel'``).

    Texts that normalise alike tokenise alike, so whatever treats texts as equal for the
    text encoder (duplicate checks, embedding caches) uses this and nothing else.
    """
    return text.translate(_ASCII_LOWER)


class TokenizedText(NamedTuple):
    """Token ids and the padding mask, both (N, max_len) int64."""

    ids: torch.Tensor
    paddings: torch.Tensor


class Tokenizer:
    """Wraps a SentencePiece ``tokenizer.model`` (the released one has 32000 pieces)."""

    def __init__(self, model: Union[str, os.PathLike, bytes], max_len: int = 64) -> None:
        """Load the model.

        Args:
            model: path to ``tokenizer.model`` or its serialised bytes.
            max_len: the text encoder's sequence length.
        """
        self.max_len = max_len
        if isinstance(model, bytes):
            self._processor = sentencepiece.SentencePieceProcessor(model_proto=model)
        else:
            self._processor = sentencepiece.SentencePieceProcessor(model_file=os.fspath(model))

    @property
    def vocab_size(self) -> int:
        """Number of pieces; every id is below it."""
        return self._processor.get_piece_size()

    def tokenize(self, texts: Sequence[str]) -> TokenizedText:
        """Tokenise a batch of texts.

        A text longer than ``max_len`` tokens is truncated and, as in the official code, its
        padding mask is all zeros. (The official code truncates a whole batch as soon as one
        text is too long and then also unmasks the others' padding; here each text is
        handled on its own, which is what the encoder expects.)

        Returns:
            ids and paddings, (N, max_len) int64.
        """
        if isinstance(texts, str):
            raise TypeError('tokenize() takes a list of strings, not a single string')
        pieces = self._processor.encode([normalise(text) for text in texts],
                                        add_bos=False, add_eos=False)
        ids = torch.zeros(len(pieces), self.max_len, dtype=torch.int64)
        paddings = torch.zeros(len(pieces), self.max_len, dtype=torch.int64)
        for row, tokens in enumerate(pieces):
            tokens = tokens[:self.max_len]
            ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
            if len(pieces[row]) <= self.max_len:
                paddings[row] = (ids[row] == 0).to(torch.int64)
        return TokenizedText(ids, paddings)
