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


def test_gmm_split_cuts_in_the_gap_when_the_poisoned_cluster_has_a_tail():
    # a tight poisoned core with a tail toward the clean scores (log10 entropy): the mixture's
    # posterior-1/2 boundary falls inside the tail; the density valley is in the empty gap
    g = torch.Generator().manual_seed(1)
    low = torch.cat([torch.randn(400, generator=g) * 0.1 - 3.0, torch.rand(100, generator=g) * 0.8 - 2.8])
    high = torch.randn(4500, generator=g) * 0.35 - 0.9
    high = high[high > -1.9]
    x = torch.cat([low, high]).double() * math.log(10)
    w, mu, var = detection.fit_gmm_1d(x)
    posterior_half = torch.softmax(-0.5 * ((x[:, None] - mu) ** 2 / var + torch.log(var)) + torch.log(w), 1)[:, 0] > 0.5
    assert float(posterior_half[:500].float().mean()) < 0.95  # the case the valley is for
    suspicious = detection.split_gmm(torch.exp(x))
    assert bool(suspicious[:500].all()) and not bool(suspicious[500:].any())


def test_gmm_split_refits_when_the_clean_scores_are_bimodal():
    # poisoned 10% at 1e-6; clean in two groups: a first 2-component fit would separate the clean
    # groups (55% below its cut, over the cap), so the split refits below the cut
    g = torch.Generator().manual_seed(2)
    poisoned = 10 ** (torch.randn(100, generator=g) * 0.3 - 6)
    clean = torch.cat([10 ** (torch.randn(450, generator=g) * 0.1 - 2.5), 10 ** (torch.randn(450, generator=g) * 0.1 - 0.5)])
    suspicious = detection.split_gmm(torch.cat([poisoned, clean]), max_fraction=0.5)
    assert bool(suspicious[:100].all()) and not bool(suspicious[100:].any())


def test_gmm_split_is_capped_and_takes_the_lowest_scores():
    scores, _ = _bimodal(n_low=700, n_high=300)
    suspicious = detection.split_gmm(scores, max_fraction=0.5)
    assert 0 < int(suspicious.sum()) <= 500
    assert scores[suspicious].max() <= scores[~suspicious].min()


def _three_groups():
    """Entropies in three groups, built so the two rules disagree on the middle one after a second
    scoring (reference threshold 0.2 of the normalised range, here 0.2 · (0.2 − 1e-6) ≈ 0.04):
    A, 100 samples near 1e-6 (both rules flag them); B, 100 samples in [0.02, 0.035] (normalised
    at most 0.175: the threshold flags them, but in log-entropy they sit with the clean mode, far
    above the empty gap where the valley is); C, 800 samples in [0.045, 0.2] (neither rule)."""
    a = torch.linspace(1e-6, 2e-6, 100)
    b = torch.linspace(0.02, 0.035, 100)
    c = torch.linspace(0.045, 0.2, 800)
    group = torch.cat([torch.zeros(100), torch.ones(100), torch.full((800,), 2.0)]).long()
    return torch.cat([a, b, c]), group == 0, group == 1


@pytest.mark.parametrize("split, excludes, victim, excluded", [
    ("hybrid", "either", "A", "A|B"), ("hybrid", "both", "A", "A"),
    ("gmm", "either", "A", "A"), ("gmm", "both", "A", "A"),
    ("reference", "either", "A|B", "A|B"), ("reference", "both", "A|B", "A|B"),
])
def test_each_split_flags_the_groups_its_rules_flag(split, excludes, victim, excluded):
    scores, in_a, in_b = _three_groups()
    sets = {"A": in_a, "A|B": in_a | in_b}
    tracker = detection.EntropyTracker(split=split, excludes=excludes)
    tracker.update(scores)
    out = tracker.update(scores)
    assert torch.equal(tracker.victim_set, sets[victim]) and torch.equal(out, sets[excluded])
    assert out is tracker.suspicious


def test_the_beneficiarys_larger_set_is_capped_at_the_lowest_entropies():
    scores, in_a, in_b = _three_groups()
    tracker = detection.EntropyTracker(split="hybrid", excludes="either", max_fraction=0.15)
    tracker.update(scores)
    tracker.update(scores)
    assert torch.equal(tracker.victim_set, in_a)  # 100 samples: under the cap of 150
    # A ∪ B holds 200: the 150 lowest are A and B's first 50 (B's scores increase with the index)
    assert torch.equal(tracker.suspicious, torch.arange(1000) < 150)


def test_either_rule_flags_more_than_both_and_stays_under_the_cap():
    # one scoring: the reference's first threshold (0.6 of the normalised range) reaches into the
    # clean mode, the valley does not; both rules flag the low mode
    scores = torch.cat([torch.full((100,), 1e-4), torch.linspace(0.1, 0.23, 900)])
    either = detection.EntropyTracker(split="hybrid", excludes="either")
    either.update(scores)
    assert torch.equal(either.victim_set, torch.arange(1000) < 100)
    assert torch.equal(either.suspicious, scores <= 1e-4 + 0.6 * (0.23 - 1e-4))  # the threshold's larger set
    capped = detection.EntropyTracker(split="hybrid", excludes="either", max_fraction=0.15)
    capped.update(scores)
    assert torch.equal(capped.suspicious, torch.arange(1000) < 150)  # the 15% lowest
    assert torch.equal(capped.victim_set, either.victim_set)


def test_over_representation_counts_a_label_against_its_share_not_its_size():
    # label 2 holds half the samples, so 30 of it among 60 flagged is only its share; label 1's 20
    # are 2 more than its share (18) predicts, label 0's 10 are 2 fewer
    labels = torch.tensor([0] * 200 + [1] * 300 + [2] * 500)
    flagged = torch.zeros(1000, dtype=torch.bool)
    flagged[190:200] = flagged[200:220] = flagged[500:530] = True
    excess = detection.over_representation(flagged, labels, 3)
    assert torch.allclose(excess, torch.tensor([10 - 12, 20 - 18, 30 - 30], dtype=torch.float64))
    assert int(torch.argmax(excess)) == 1


def test_target_labels_keep_every_other_label_out_of_the_beneficiarys_set_only():
    scores, in_a, in_b = _three_groups()
    index = torch.arange(len(scores))
    labels = index % 5 + 1
    labels[:100] = 3  # group A, the lowest entropies, carries the target label...
    labels[:20] = 4   # ...except 20 samples of another label, as when the victim grows sure of a class
    free = detection.EntropyTracker(split="hybrid")
    guarded = detection.EntropyTracker(split="hybrid", target_labels=labels)
    for _ in range(2):
        free.update(scores)
        guarded.update(scores)
    assert guarded.target == 3 and free.target == -1
    # the victim's set is not restricted to the target: group A, label 4 included
    assert torch.equal(guarded.victim_set, in_a) and torch.equal(free.victim_set, in_a)
    assert torch.equal(free.suspicious, in_a | in_b)
    # guarded, the beneficiary leaves out only label 3 of A ∪ B: A from index 20, and B's label-3 samples
    assert torch.equal(guarded.suspicious, ((index >= 20) & in_a) | (in_b & (index % 5 == 2)))
    other = detection.EntropyTracker(split="hybrid", target_labels=labels)
    other.load_state_dict(guarded.state_dict())
    assert other.target == 3 and torch.equal(other.suspicious, guarded.suspicious)
    assert other.votes.tolist() == guarded.votes.tolist() == [0, 0, 0, 2, 0, 0]


def test_target_is_the_label_holding_a_majority_of_the_votes():
    scores, truth = _bimodal()
    labels = torch.arange(len(scores)) % 5 + 1
    labels[:100] = 3  # the poisoned samples
    # a first victim that has not isolated the trigger is surest of clean samples of label 2: a
    # target kept from that scoring alone would hide the poisoned samples for good
    early = scores.clone()
    early[:100], early[labels == 2] = scores[100:200], scores[:len(early[labels == 2])]
    # no label ever leads in separation by this margin: every vote is the victim's set's; no
    # smoothing: each scoring alone
    tracker = detection.EntropyTracker(split="hybrid", target_labels=labels, target_margin=1e9, weight_new=1.0)
    tracker.update(early)
    assert tracker.target == 2 and not bool(tracker.suspicious[truth].any())
    tracker.update(scores)
    assert tracker.votes.tolist() == [0, 0, 1, 1, 0, 0]
    assert tracker.target == -1  # a tie: no target, and the split draws on every label
    assert len(labels[tracker.suspicious].unique()) > 1 and float(tracker.suspicious[truth].float().mean()) > 0.5
    tracker.update(scores)
    assert tracker.target == 3 and bool(tracker.suspicious[truth].all())
    assert bool((labels[tracker.suspicious] == 3).all())
    tracker.update(scores)
    # a later victim sure of every clean sample of label 5 votes for it; 3 of 5 votes keep the target
    drifted = scores.clone()
    drifted[labels == 5] = 1e-9
    tracker.update(drifted)
    assert tracker.votes.tolist() == [0, 0, 1, 3, 0, 1] and tracker.target == 3


def test_tracker_reference_mode_follows_the_schedule():
    scores, truth = _bimodal()
    tr = detection.EntropyTracker(split="reference")
    first = tr.update(scores).clone()
    second = tr.update(scores)
    assert tr.scorings == 2 and first.sum() >= second.sum()  # 0.6 flags more than 0.2
    state = tr.state_dict()
    other = detection.EntropyTracker(split="reference")
    other.load_state_dict(state)
    assert torch.equal(other.suspicious, second) and torch.equal(other.victim_set, second) and other.scorings == 2
