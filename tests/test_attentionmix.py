import pytest
import torch

from vablib.attentionmix import attention_maps, attention_mix


def _batch(b=6, c=3, h=8, w=8, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g)
    feats = torch.randn(b, 5, h // 2, w // 2, generator=g)
    y = torch.nn.functional.one_hot(torch.randint(0, k, (b,), generator=g), k).float()
    return x, y, feats


def test_attention_maps_are_normalised_and_upsampled():
    _, _, feats = _batch()
    att = attention_maps(feats, (8, 8))
    assert att.shape == (6, 1, 8, 8)
    assert torch.allclose(att.amin(dim=(2, 3)), torch.zeros(6, 1)) and torch.allclose(att.amax(dim=(2, 3)), torch.ones(6, 1))
    # nearest upsampling: each 2×2 block is constant
    assert torch.equal(att[:, :, ::2, ::2], att[:, :, 1::2, 1::2])


def test_mix_shapes_label_sums_and_outside_mask_unchanged():
    x, y, feats = _batch()
    perm = torch.tensor([1, 2, 3, 4, 5, 0])
    mixed, targets, info = attention_mix(x, y, feats, perm, threshold=0.1)
    assert mixed.shape == x.shape and targets.shape == y.shape
    torch.testing.assert_close(targets.sum(1), torch.ones(6))
    outside = info["mask"].expand_as(x) == 0
    assert torch.equal(mixed[outside], x[outside])
    assert torch.equal(info["mask"], (attention_maps(feats, (8, 8)) >= 0.1).float())


def test_mix_with_itself_is_identity():
    x, y, feats = _batch()
    mixed, targets, _ = attention_mix(x, y, feats, torch.arange(6))
    torch.testing.assert_close(mixed, x)
    torch.testing.assert_close(targets, y)


def test_weights_against_a_hand_computed_pair():
    # image 0: attention only in the left column; image 1: uniform attention
    feats = torch.zeros(2, 1, 2, 2)
    feats[0, 0, :, 0] = 1.0
    feats[1, 0] = torch.tensor([[1.0, 1.0], [1.0, 2.0]])
    x = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    y = torch.eye(2)
    mixed, targets, info = attention_mix(x, y, feats, torch.tensor([1, 0]), threshold=0.1)
    att1 = torch.tensor([[0.0, 0.0], [0.0, 1.0]])  # min-max of [[1,1],[1,4]] → [[0,0],[0,1]]
    # image 0's mask = left column; W = 1 (all its attention is inside); Wc = att1 in left col / total = 0
    assert info["w"][0] == pytest.approx(1.0) and info["wc"][0] == pytest.approx(0.0)
    # so its pixels keep weight W/(W+Wc)=1 and its label keep = 1 - W + W²/(W+Wc) = 1
    torch.testing.assert_close(mixed[0], x[0])
    torch.testing.assert_close(targets[0], y[0])
    # image 1's mask = bottom-right pixel; W = 1; partner (image 0) has attention 1 in the left column
    # only, so Wc = 0 again: nothing changes for image 1 either
    assert info["w"][1] == pytest.approx(1.0) and att1.sum() == 1
    torch.testing.assert_close(targets[1], y[1])


def test_label_mixing_formula():
    x, y, feats = _batch(b=4, seed=3)
    perm = torch.tensor([2, 3, 0, 1])
    _, targets, info = attention_mix(x, y, feats, perm, threshold=0.5)
    w, wc = info["w"], info["wc"]
    keep = 1 - w + w * w / (w + wc)
    torch.testing.assert_close(targets, keep[:, None] * y + (1 - keep)[:, None] * y[perm])
