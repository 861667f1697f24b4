import numpy as np
import pytest
import torch

from vablib.metrics import auroc, detection_metrics


def _auroc_pairs(scores, pos):
    """Direct definition: P(score_pos > score_neg) + 0.5 P(tie), over all pairs."""
    p, n = scores[pos], scores[~pos]
    diff = p[:, None] - n[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / (len(p) * len(n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, 200).astype(float)  # many ties
    pos = rng.random(200) < 0.3
    assert auroc(torch.tensor(scores), torch.tensor(pos)) == pytest.approx(_auroc_pairs(scores, pos))


def test_auroc_extremes():
    pos = torch.tensor([True, True, False, False])
    assert auroc(torch.tensor([3.0, 4, 1, 2]), pos) == 1.0
    assert auroc(torch.tensor([1.0, 2, 3, 4]), pos) == 0.0
    assert np.isnan(auroc(torch.tensor([1.0, 2]), torch.tensor([True, True])))


def test_detection_metrics_counts():
    flagged = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0], dtype=torch.bool)
    poisoned = torch.tensor([1, 1, 0, 1, 0, 0, 0, 0], dtype=torch.bool)
    m = detection_metrics(flagged, poisoned)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["fpr"] == pytest.approx(1 / 5) and m["f1"] == pytest.approx(2 / 3)
    assert (m["n_suspicious"], m["n_credible"]) == (3, 5)


def test_backdoor_metrics_class_accuracy_matches_a_direct_count():
    from vablib.batches import Normalizer
    from vablib.metrics import backdoor_metrics

    class Fixed(torch.nn.Module):  # predicts the class stored in the first pixel
        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0, 0, 0].round().long(), 3).float()

    y = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 1, 0])
    x = torch.zeros(6, 1, 4, 4, dtype=torch.uint8)  # on-device layout: N×C×H×W
    x[:, 0, 0, 0] = pred.to(torch.uint8)
    identity = Normalizer(torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 1 / 255))  # pixel values unchanged
    m = backdoor_metrics(Fixed(), identity, x, y, x[:0], y[:0], y[:0])
    assert m["acc"] == pytest.approx(3 / 6)
    assert m["class_acc"] == pytest.approx([1 / 3, 1.0, 0.0])
