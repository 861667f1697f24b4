import torch

from vablib.suppression import labelled_targets, pseudo_targets, victim_soft_predictions


def test_victim_soft_predictions_use_the_temperature():
    logits = torch.tensor([[3.0, 0.0, 0.0]])
    q = victim_soft_predictions(logits, 3.0)
    torch.testing.assert_close(q, torch.softmax(logits / 3, 1))
    assert q[0, 0] < torch.softmax(logits, 1)[0, 0]


def test_labelled_targets_subtract_and_clip():
    q = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    t = labelled_targets(torch.tensor([0, 1]), q)
    torch.testing.assert_close(t, torch.tensor([[0.3, 0.0, 0.0], [0.0, 0.9, 0.0]]))


def test_pseudo_targets_sharpen_the_mean_then_subtract():
    p1 = torch.tensor([[0.6, 0.4], [0.2, 0.8]])
    p2 = torch.tensor([[0.3, 0.7], [0.4, 0.6]])  # mean: [0.45, 0.55] → class 1; [0.3, 0.7] → class 1
    q = torch.tensor([[0.1, 0.9], [0.5, 0.5]])
    torch.testing.assert_close(pseudo_targets(p1, p2, q), torch.tensor([[0.0, 0.1], [0.0, 0.5]]))


def test_pseudo_targets_drop_rows_below_the_confidence_gate():
    p1 = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    p2 = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.0, 1.0]])  # mean top: 0.9, 0.6, 0.9
    q = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.5, 0.5]])
    ungated = pseudo_targets(p1, p2, q)
    gated = pseudo_targets(p1, p2, q, min_confidence=0.8)
    torch.testing.assert_close(ungated, torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.5]]))
    torch.testing.assert_close(gated, torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.5]]))
