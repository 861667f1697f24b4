import math

import numpy as np
import pytest
import torch

from vablib import detection


def test_entropy_matches_direct_computation():
    torch.manual_seed(0)
    logits = torch.randn(50, 10) * 4
    p = torch.softmax(logits.double(), 1).numpy()
    direct = -(p * np.log(p)).mean(1)
    np.testing.assert_allclose(detection.prediction_entropy(logits).numpy(), direct, rtol=1e-5, atol=1e-7)


def test_entropy_is_safe_for_extreme_and_nonfinite_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [float("nan"), 0, 0], [float("inf"), 0, 0], [0.0, 0, 0]])
    h = detection.prediction_entropy(logits)
    assert torch.isfinite(h).all()
    assert h[0] == pytest.approx(0.0, abs=1e-6)
    for row in (1, 2, 3):  # non-finite rows count as maximally uncertain, like uniform logits
        assert h[row] == pytest.approx(math.log(3) / 3, rel=1e-5)


def test_ema_and_minmax():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])
    assert torch.equal(detection.ema_update(None, a), a)
    torch.testing.assert_close(detection.ema_update(a, b, 0.75), 0.75 * b + 0.25 * a)
    torch.testing.assert_close(detection.minmax(torch.tensor([2.0, 4.0, 3.0])), torch.tensor([0.0, 1.0, 0.5]))
    assert torch.isfinite(detection.minmax(torch.ones(4))).all()


def test_reference_threshold_schedule():
    assert [detection.reference_threshold(e) for e in (1, 2, 3, 10)] == pytest.approx([0.6, 0.2, 0.2, 0.2])
    mask = detection.split_reference(torch.tensor([0.0, 0.2, 0.21, 1.0]), 0.2)
    assert mask.tolist() == [True, True, False, False]


def _bimodal(n_low=100, n_high=900, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = 10 ** (torch.randn(n_low, generator=g) * 0.5 - 6)  # poisoned: entropy ~1e-6
    high = 10 ** (torch.randn(n_high, generator=g) * 0.3 - 1)  # clean: ~0.1
    return torch.cat([low, high]), torch.cat([torch.ones(n_low, dtype=torch.bool), torch.zeros(n_high, dtype=torch.bool)])


def test_gmm_split_recovers_the_low_entropy_cluster():
    scores, truth = _bimodal()
    suspicious = detection.split_gmm(scores)
    assert (suspicious == truth).float().mean() > 0.99


def test_gmm_split_is_capped():
    scores, _ = _bimodal(n_low=700, n_high=300)
    suspicious = detection.split_gmm(scores, max_fraction=0.5)
    assert int(suspicious.sum()) == 500
    assert scores[suspicious].max() <= scores[~suspicious].min()  # the lowest scores were taken


def test_tracker_reference_mode_follows_the_schedule():
    scores, truth = _bimodal()
    tr = detection.EntropyTracker(split="reference")
    first = tr.update(scores).clone()
    second = tr.update(scores)
    assert tr.rounds == 2 and first.sum() >= second.sum()  # 0.6 flags more than 0.2
    state = tr.state_dict()
    other = detection.EntropyTracker(split="reference")
    other.load_state_dict(state)
    assert torch.equal(other.suspicious, second) and other.rounds == 2
