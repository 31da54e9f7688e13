# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Text encoding at its real length: one batch per label change, padded to its longest prompt.

The official tokenizer pads every prompt to 64 tokens; padding is masked in attention and
pooling, so encoding a batch padded only to its longest prompt must give the golden
``text_embeddings`` and the same numbers as a pad-to-64 run. The bf16 text precision (label
changes on CPUs with native bf16) is checked against fp32.
"""
import golden
from golden import GOLDEN
import numpy as np
import pytest
import torch

from tipsv2_ros.model.text import packed_linear, sinusoid_position_embedding
from tipsv2_ros.model.zero_shot import prompts, TEMPLATES
from tipsv2_ros.runtime import cpu, startup
from tipsv2_ros.runtime.frame.labels import LabelBank

EXPECTED = np.load(GOLDEN / 'expected.npz')
LABELS = ('floor', 'wall', 'ceiling', 'person', 'door', 'table', 'chair', 'window', 'lamp',
          'plant')


@pytest.fixture()
def model():
    return golden.load_model()


class _Batches:
    """Records the (N, L) shape of every batch the text encoder runs."""

    def __init__(self, module: torch.nn.Module):
        self.shapes = []
        self._handle = module.register_forward_hook(
            lambda _, inputs, __: self.shapes.append(tuple(inputs[0].shape)))

    def close(self):
        self._handle.remove()


def test_real_length_reproduces_the_golden_embeddings_and_a_pad_to_64_run(model):
    texts = prompts(list(EXPECTED['labels']), list(EXPECTED['templates']))
    ids, paddings = model.tokenizer.tokenize(texts)
    assert ids.shape[1] == 64  # the official tokenisation, as in the golden set
    longest = int((paddings == 0).sum(dim=1).max())
    assert longest < 64
    batches = _Batches(model.text)
    with torch.inference_mode():
        ours = model.encode_text(texts)
        padded = model.text(ids, paddings)  # the whole 64 positions, as the official code
    batches.close()
    assert batches.shapes[0] == (len(texts), longest)  # one batch, at its longest prompt
    golden_embeddings = torch.from_numpy(EXPECTED['text_embeddings'])
    scale = float(golden_embeddings.abs().max())
    assert float((ours - golden_embeddings).abs().max()) <= 1e-5 * max(1.0, scale)
    assert float((padded - golden_embeddings).abs().max()) <= 1e-5 * max(1.0, scale)
    assert torch.allclose(ours, padded, rtol=0, atol=1e-6 * max(1.0, scale))


def test_each_batch_is_padded_to_its_own_longest_prompt(model):
    short, long = ['a floor.', 'wall'], ['a photo of the large glass door in a video game.']
    with torch.inference_mode():
        together = model.encode_text(short + long)
        alone = model.encode_text(short)
    lengths = [int(n) for n in (model.tokenizer.tokenize(short).paddings == 0).sum(dim=1)]
    batches = _Batches(model.text)
    with torch.inference_mode():
        model.encode_text(short)
    batches.close()
    assert batches.shapes == [(2, max(lengths))]
    assert torch.allclose(together[:2], alone, rtol=0, atol=1e-6)


def test_a_label_change_encodes_all_its_prompts_in_one_batch(model):
    bank = LabelBank(lambda names, templates: model.text_classifier(names, templates))
    batches = _Batches(model.text)
    bank.build(LABELS, TEMPLATES)
    bank.build(LABELS[:3] + ('lamp shade',), TEMPLATES)  # only the new label is encoded
    batches.close()
    texts = prompts(LABELS, TEMPLATES)
    longest = int((model.tokenizer.tokenize(texts).paddings == 0).sum(dim=1).max())
    assert batches.shapes[0] == (len(LABELS) * len(TEMPLATES), longest)
    assert [shape[0] for shape in batches.shapes] == [90, 9]


def test_bf16_text_stays_close_to_fp32(model):
    with torch.inference_mode():
        reference = model.text_classifier(LABELS)
        model.set_text_precision('bf16')
        assert model.text_precision == 'bf16'
        ours = model.text_classifier(LABELS)
    assert ours.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(ours, reference)
    assert float(cosine.min()) > 0.999
    assert not torch.equal(ours, reference)  # it did run in bf16


def test_text_precision_auto_follows_the_cpu():
    expected = 'bf16' if cpu.native_bf16() else 'fp32'
    assert startup.resolve_text_precision('auto', torch.device('cpu')) == expected
    assert startup.resolve_text_precision('auto', torch.device('cuda')) == 'fp32'
    assert startup.resolve_text_precision('fp32', torch.device('cpu')) == 'fp32'
    with pytest.raises(startup.StartupError, match='text_precision'):
        startup.resolve_text_precision('int8', torch.device('cpu'))


def test_bf16_products_with_prepacked_weights_equal_plain_products_and_follow_weight_changes():
    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 48).to(torch.bfloat16)
    x = torch.randn(5, 7, 32).to(torch.bfloat16)
    with torch.inference_mode():
        for activation, expected in (('none', lambda y: y), ('relu', torch.relu)):
            ours = packed_linear(x, layer.weight, layer.bias, activation)
            assert torch.equal(ours, expected(torch.nn.functional.linear(x, layer.weight,
                                                                         layer.bias)))
    with torch.no_grad():
        layer.weight.mul_(-2.0)  # e.g. new weights loaded in place: the layout is redone
    with torch.inference_mode():
        changed = packed_linear(x, layer.weight, layer.bias)
    assert torch.equal(changed, torch.nn.functional.linear(x, layer.weight, layer.bias))


def test_the_real_token_path_matches_a_plain_padded_forward(model):
    # The encoder multiplies only real tokens; a reference that runs the official block
    # arithmetic on the whole padded batch must give the same embeddings.
    texts = ['a floor.', 'a photo of the large glass door in a video game.', 'wall']
    ids, paddings = model.tokenizer.tokenize(texts)
    text = model.text
    valid = paddings == 0
    with torch.inference_mode():
        ours = text(ids, paddings)
        x = text.token_embedding(ids) * text.cfg.width ** 0.5
        x = x + sinusoid_position_embedding(ids.shape[1], text.cfg.width)
        for block in text.transformer.resblocks:
            attn = torch.nn.MultiheadAttention(text.cfg.width, block.attn.heads,
                                               batch_first=True)
            attn.in_proj_weight.copy_(block.attn.in_proj_weight)
            attn.in_proj_bias.copy_(block.attn.in_proj_bias)
            attn.out_proj.load_state_dict(block.attn.out_proj.state_dict())
            h = block.ln_1(x)
            x = x + attn(h, h, h, key_padding_mask=~valid, need_weights=False)[0]
            x = x + block.mlp.c_proj(torch.relu(block.mlp.c_fc(block.ln_2(x))))
        x = text.ln_final(x)
        keep = valid[..., None].float()
        reference = (x * keep).sum(dim=1) / keep.sum(dim=1)
    scale = float(reference.abs().max())
    assert float((ours - reference).abs().max()) <= 1e-5 * max(1.0, scale)
