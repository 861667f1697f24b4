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


def test_hybrid_split_trains_the_victim_on_what_both_rules_flag_and_excludes_what_either_flags():
    scores, truth = _bimodal()
    for split in ("hybrid", "gmm", "reference"):
        for excludes in ("either", "both"):
            tr = detection.EntropyTracker(split=split, excludes=excludes)
            tr.update(scores)
            out = tr.update(scores)
            gmm, ref = detection.split_gmm(tr.ema), detection.split_reference(tr.normalized, 0.2)
            victim = {"hybrid": gmm & ref, "gmm": gmm, "reference": ref}[split]
            either = detection.lowest(tr.ema, gmm | ref, 0.5)  # here the union exceeds the cap
            excluded = either if (split, excludes) == ("hybrid", "either") else victim
            assert torch.equal(tr.victim_set, victim) and torch.equal(out, excluded) and out is tr.suspicious
    hybrid = detection.EntropyTracker(split="hybrid")
    hybrid.update(scores)
    hybrid.update(scores)
    assert (hybrid.victim_set == truth).float().mean() > 0.99


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


def test_inferred_target_is_the_most_over_represented_label_not_the_most_frequent():
    # label 2 holds half the samples, so 30 of it among 60 flagged is only its share; label 1's 20
    # are 14 more than its share predicts
    labels = torch.tensor([0] * 200 + [1] * 300 + [2] * 500)
    flagged = torch.zeros(1000, dtype=torch.bool)
    flagged[190:200] = flagged[200:220] = flagged[500:530] = True
    assert detection.inferred_target(flagged, labels) == 1


def test_target_labels_keep_every_other_label_out_of_the_beneficiarys_set_only():
    scores, truth = _bimodal()  # the first 100 are the low (poisoned) mode
    labels = torch.arange(len(scores)) % 5 + 1
    labels[:100] = 3  # the poisoned samples carry the target label...
    labels[:20] = 4   # ...except 20 low-entropy samples of another label, as when the victim grows sure of a class
    free = detection.EntropyTracker(split="hybrid")
    guarded = detection.EntropyTracker(split="hybrid", target_labels=labels)
    for _ in range(2):
        free.update(scores)
        guarded.update(scores)
    assert guarded.target == 3 and free.target == -1
    assert bool(free.suspicious[:20].all())  # unguarded, the low-entropy samples of label 4 are left out
    gmm, ref, target = detection.split_gmm(guarded.ema), detection.split_reference(guarded.normalized, 0.2), labels == 3
    assert torch.equal(guarded.victim_set, gmm & ref) and torch.equal(guarded.victim_set, free.victim_set)
    assert torch.equal(guarded.suspicious, detection.lowest(guarded.ema, (gmm | ref) & target, 0.5))
    assert not bool(guarded.suspicious[:20].any()) and bool(guarded.suspicious[20:100].all())
    other = detection.EntropyTracker(split="hybrid", target_labels=labels)
    other.load_state_dict(guarded.state_dict())
    assert other.target == 3 and torch.equal(other.suspicious, guarded.suspicious)
    assert other.votes.tolist() == guarded.votes.tolist() == [0, 0, 0, 2, 0, 0]


def test_target_is_the_label_most_scorings_voted_for():
    scores, truth = _bimodal()
    labels = torch.arange(len(scores)) % 5 + 1
    labels[:100] = 3  # the poisoned samples
    # a first victim that has not isolated the trigger is surest of clean samples of label 2: a
    # target kept from that scoring alone would hide the poisoned samples for good
    early = scores.clone()
    early[:100], early[labels == 2] = scores[100:200], scores[:len(early[labels == 2])]
    tracker = detection.EntropyTracker(split="hybrid", target_labels=labels)
    tracker.update(early)
    assert tracker.target == 2 and not bool(tracker.suspicious[truth].any())
    tracker.update(scores)
    assert tracker.target == 2  # one vote each: a tie keeps the current target
    tracker.update(scores)
    assert tracker.target == 3 and bool(tracker.suspicious[truth].all())
    assert bool((labels[tracker.suspicious] == 3).all())
    # a later victim sure of every clean sample of label 5 votes for it; one such scoring does not move the target
    drifted = tracker.ema.clone()
    drifted[labels == 5] = 1e-9
    tracker.update(drifted)
    assert int(tracker.votes[5]) == 1 and tracker.target == 3
    # a checkpoint from before the votes: its target counts for every earlier scoring
    state = {k: v for k, v in tracker.state_dict().items() if k != "votes"}
    old = detection.EntropyTracker(split="hybrid", target_labels=labels)
    old.load_state_dict(state)
    old.update(drifted)
    assert old.target == 3 and int(old.votes[3]) == tracker.rounds  # the 4 scorings before


def test_samples_flagged_in_most_scorings_stay_suspicious_when_one_scoring_misses_them():
    # as from a victim: poisoned samples far below, clean ones bunched just under the maximum entropy
    g = torch.Generator().manual_seed(0)
    scores = torch.cat([10 ** (torch.randn(100, generator=g) * 0.5 - 6), 0.23 - 10 ** (torch.randn(900, generator=g) * 0.3 - 2)])
    truth = torch.arange(1000) < 100
    once = scores.clone()
    once[500] = 1e-6  # a clean sample the first victim happened to be sure of
    keep = detection.EntropyTracker(split="hybrid", keep_fraction=0.5)
    plain = detection.EntropyTracker(split="hybrid")
    for s in (once, scores, scores):
        keep.update(s)
        plain.update(s)
    # flagged in one scoring of three: not kept
    assert torch.equal(plain.suspicious, truth) and torch.equal(keep.suspicious, truth)
    assert keep.flag_counts[:100].tolist() == [3] * 100 and int(keep.flag_counts[500]) == 1
    # a drifted victim loses 30 of the poisoned samples for one scoring: flagged in 3 of 4, they stay
    drifted = scores.clone()
    drifted[:30] = scores.max()
    restored = detection.EntropyTracker(split="hybrid", keep_fraction=0.5)
    restored.load_state_dict(keep.state_dict())
    for tracker in (keep, plain, restored):
        tracker.update(drifted)
    assert torch.equal(plain.suspicious, truth & (torch.arange(1000) >= 30)) and torch.equal(keep.suspicious, truth)
    assert torch.equal(restored.suspicious, keep.suspicious) and torch.equal(restored.flag_counts, keep.flag_counts)
    assert torch.equal(keep.victim_set, plain.victim_set)  # the victim's own set is the current scoring's
    # missed twice more they are flagged in 3 of 6, no longer more than half
    for _ in range(2):
        keep.update(drifted)
    assert torch.equal(keep.suspicious, truth & (torch.arange(1000) >= 30))


def test_tracker_reference_mode_follows_the_schedule():
    scores, truth = _bimodal()
    tr = detection.EntropyTracker(split="reference")
    first = tr.update(scores).clone()
    second = tr.update(scores)
    assert tr.rounds == 2 and first.sum() >= second.sum()  # 0.6 flags more than 0.2
    state = tr.state_dict()
    other = detection.EntropyTracker(split="reference")
    other.load_state_dict(state)
    assert torch.equal(other.suspicious, second) and torch.equal(other.victim_set, second) and other.rounds == 2
