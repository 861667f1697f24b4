"""AttentionMix against the formulas of the method reference, computed here by hand with NumPy
loops on small integer-valued feature maps (so attention values such as 0.5 are exact)."""
import numpy as np
import pytest
import torch

from vablib.attentionmix import attention_maps, attention_mix

THRESHOLD = 0.5


def _batch(seed=0):
    """Four 2-channel 4×4 images with 2×2 feature maps (upsampled ×2) and distinct partners.
    Image 0's raw attention (sum of squares over channels) is [[0, 1], [2, 4]] by construction."""
    rng = np.random.default_rng(seed)
    feats = rng.integers(-2, 3, (4, 2, 2, 2)).astype(np.float32)
    feats[0] = [[[0, 1], [1, 2]], [[0, 0], [1, 0]]]  # squares summed: [[0, 1], [2, 4]]
    x = rng.normal(size=(4, 2, 4, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    perm = np.array([1, 2, 3, 0])  # no image is its own partner
    return x, y, feats, perm


def _by_hand(x, y, feats, perm, threshold):
    """The reference's AttentionMix, one image and one pixel at a time."""
    b, _, h, w = x.shape
    fh, fw = feats.shape[2:]
    att = np.zeros((b, h, w))
    for i in range(b):
        for r in range(h):
            for c in range(w):  # nearest upsampling: pixel (r, c) reads feature cell (r*fh//h, c*fw//w)
                att[i, r, c] = sum(float(v) ** 2 for v in feats[i, :, r * fh // h, c * fw // w])
        lo, hi = att[i].min(), att[i].max()
        att[i] = (att[i] - lo) / (hi - lo)
    mask = att >= threshold
    mixed, labels, W, Wc = x.astype(np.float64).copy(), np.zeros(y.shape), np.zeros(b), np.zeros(b)
    for i in range(b):
        p = perm[i]
        W[i] = att[i][mask[i]].sum() / att[i].sum()
        Wc[i] = att[p][mask[i]].sum() / att[p].sum()
        for r in range(h):
            for c in range(w):
                if mask[i, r, c]:
                    mixed[i, :, r, c] = (W[i] * x[i, :, r, c] + Wc[i] * x[p, :, r, c]) / (W[i] + Wc[i])
        kept = 1 - W[i] + W[i] ** 2 / (W[i] + Wc[i])
        labels[i] = kept * y[i] + (W[i] - W[i] ** 2 / (W[i] + Wc[i])) * y[p]
    return att, mask, W, Wc, mixed, labels


def _mix(x, y, feats, perm, threshold=THRESHOLD):
    return attention_mix(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(feats),
                         torch.from_numpy(perm), threshold=threshold)


def test_attention_maps_match_the_hand_computation():
    x, y, feats, perm = _batch()
    att, *_ = _by_hand(x, y, feats, perm, THRESHOLD)
    got = attention_maps(torch.from_numpy(feats), (4, 4))
    assert got.shape == (4, 1, 4, 4)
    torch.testing.assert_close(got[:, 0], torch.from_numpy(att).float())
    # image 0: [[0, 1], [2, 4]] min-max normalised, each cell a 2×2 block
    expected0 = np.kron(np.array([[0.0, 0.25], [0.5, 1.0]]), np.ones((2, 2)))
    assert np.array_equal(got[0, 0].numpy(), expected0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_weights_pixels_and_labels_follow_the_reference_formulas(seed):
    x, y, feats, perm = _batch(seed)
    _, mask, W, Wc, mixed, labels = _by_hand(x, y, feats, perm, THRESHOLD)
    got_x, got_y, info = _mix(x, y, feats, perm)
    assert torch.equal(info["mask"][:, 0].bool(), torch.from_numpy(mask))
    torch.testing.assert_close(info["w"], torch.from_numpy(W).float())
    torch.testing.assert_close(info["wc"], torch.from_numpy(Wc).float())
    torch.testing.assert_close(got_x, torch.from_numpy(mixed).float())
    torch.testing.assert_close(got_y, torch.from_numpy(labels).float())
    outside = ~torch.from_numpy(mask)[:, None].expand_as(got_x)
    assert torch.equal(got_x[outside], torch.from_numpy(x)[outside])  # bit for bit outside the mask
    # the case is not trivial: partners bring attention into the masks, so pixels and labels move
    assert (Wc > 0).any() and not np.allclose(mixed, x) and not np.allclose(labels, y)


def test_the_threshold_is_inclusive():
    x, y, feats, perm = _batch()
    _, _, info = _mix(x, y, feats, perm)
    # image 0's attention is 0.5 exactly in its bottom-left block and 1 in its bottom-right one
    expected0 = np.kron(np.array([[False, False], [True, True]]), np.ones((2, 2), bool))
    assert np.array_equal(info["mask"][0, 0].bool().numpy(), expected0)
