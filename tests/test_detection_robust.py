"""Target inference that abstains or changes its mind, the fall-back to every label, the
confidence a defender can compute without the ground truth, and Fashion-MNIST offline."""
import gzip

import numpy as np
import pytest
import torch

from vablib import data, detection
from vablib.config import VabConfig
from vablib.errors import ConfigError, DataFormatError, DataNotFoundError

LABELS, PER_LABEL = 5, 200


def _scores(modes: dict, seed: int = 0):
    """Entropies of LABELS × PER_LABEL samples whose log is N(−2, 0.3) (clean, unsure) except
    where `modes` says otherwise: label → (how many of its samples, log-entropy centre)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(LABELS * PER_LABEL) // PER_LABEL
    log_h = -2.0 + 0.3 * torch.randn(len(labels), generator=gen, dtype=torch.float64)
    for label, (count, centre) in modes.items():
        idx = torch.nonzero(labels == label).flatten()[:count]
        log_h[idx] = centre + 0.3 * torch.randn(count, generator=gen, dtype=torch.float64)
    return torch.exp(log_h).float(), labels


def _tracker(labels, **kw):
    return detection.EntropyTracker(split="hybrid", target_labels=labels, **{"target_rule": "separation", **kw})


def test_separated_target_abstains_unless_the_best_label_leads_by_the_margin():
    seps = torch.tensor([1.0, 1.5, 6.0, 1.2], dtype=torch.float64)
    lead = float(seps[2] - seps[1])
    assert detection.separated_target(seps, margin=lead - 0.1) == 2
    assert detection.separated_target(seps, margin=lead + 0.1) == -1
    level = torch.full((4,), 3.0, dtype=torch.float64)  # every label alike: an all-to-all attack, or no trigger
    assert detection.separated_target(level, margin=0.5) == -1


def test_separation_is_large_for_two_modes_small_for_one_and_ignores_a_few_outliers():
    gen = torch.Generator().manual_seed(1)
    one = torch.randn(400, generator=gen, dtype=torch.float64)
    two = torch.cat([one[:200] - 8.0, one[200:]])
    assert detection.separation(one) < detection.CLEAR_SEPARATION < detection.separation(two)
    outliers = one.clone()
    outliers[:3] = -40.0  # under MIN_MODE_WEIGHT of the samples
    assert 3 / len(outliers) < detection.MIN_MODE_WEIGHT
    assert detection.separation(outliers) < detection.CLEAR_SEPARATION


def test_target_is_the_bimodal_label_not_a_clean_class_the_victim_is_sure_of():
    # label 3: half its samples poisoned, far below; label 1: a clean class sure as a whole (one low mode)
    scores, labels = _scores({3: (100, -8.0), 1: (PER_LABEL, -5.0)})
    poisoned = (labels == 3) & (torch.arange(len(labels)) % PER_LABEL < 100)
    votes, sep = _tracker(labels, target_rule="votes"), _tracker(labels)
    counts = _tracker(labels, target_rule="votes", target_margin=1e9)  # votes from the victim's set alone
    for _ in range(3):
        for tracker in (votes, sep, counts):
            tracker.update(scores)
    assert torch.equal(sep.victim_set, votes.victim_set)  # the rule never changes the victim's set
    assert bool(sep.victim_set[labels == 1].all())  # the easy class is in the victim's set...
    assert counts.target == 1 and not bool(counts.suspicious[poisoned].any())  # ...and outnumbers the target
    for tracker in (votes, sep):  # the lead in separation decides
        assert tracker.target == 3 and bool(tracker.suspicious[poisoned].all())
        assert bool((labels[tracker.suspicious] == 3).all())
    assert votes.votes.tolist() == [0, 0, 0, 3, 0]
    conf = sep.confidence()
    assert not conf["low_confidence"] and conf["split_separation"] == pytest.approx(float(sep.separations[3]), abs=1e-3)
    assert votes.confidence()["target_share"] < detection.MIN_TARGET_SHARE  # the easy class fills the victim's set,
    assert not votes.confidence()["low_confidence"]  # but the target leads in separation


def test_a_label_leading_in_separation_votes_only_if_the_victims_set_over_represents_it():
    # label 3 splits into two modes far apart, but both above the poisoned label 2's low mode:
    # none of label 3 is in the victim's set
    scores, labels = _scores({2: (100, -8.0), 3: (100, 6.0)})
    votes, sep = _tracker(labels, target_rule="votes"), _tracker(labels)
    for tracker in (votes, sep):
        tracker.update(scores)
    assert detection.separated_target(votes.separations, votes.target_margin) == 3
    assert not bool(votes.victim_set[labels == 3].any())
    assert votes.votes.tolist() == [0, 0, 1, 0, 0] and votes.target == 2
    assert sep.target == 3  # the separation rule has no such guard


def test_target_changes_its_mind_when_another_label_stands_out():
    early, labels = _scores({2: (100, -8.0)})
    late, _ = _scores({4: (100, -8.0)}, seed=1)
    tracker = _tracker(labels, weight_new=1.0)  # no smoothing: each scoring alone
    tracker.update(early)
    assert tracker.target == 2
    tracker.update(late)
    assert tracker.target == 4
    votes = _tracker(labels, weight_new=1.0, target_rule="votes")
    votes.update(early)
    assert votes.target == 2
    votes.update(late)
    assert votes.target == 4  # a clear lead names the target at once


def test_a_clear_lead_outvotes_the_scorings_before_it():
    # a victim that has not learned the trigger: for four scorings a whole clean class (1) fills the
    # victim's set and no label leads, so each votes for it; then label 3's poisoned low mode appears
    labels = torch.arange(LABELS * PER_LABEL) // PER_LABEL
    tracker = _tracker(labels, target_rule="votes", weight_new=1.0)
    poisoned = (labels == 3) & (torch.arange(len(labels)) % PER_LABEL < 100)
    for seed in range(4):
        tracker.update(_scores({1: (PER_LABEL, -8.0)}, seed=seed)[0])
        assert detection.separated_target(tracker.separations, tracker.target_margin) == -1
    assert tracker.target == 1 and tracker.votes.tolist() == [0, 4, 0, 0, 0]
    tracker.update(_scores({1: (PER_LABEL, -8.0), 3: (100, -12.0)}, seed=4)[0])
    assert tracker.votes.tolist() == [0, 4, 0, 1, 0]  # one vote of five...
    assert tracker.target == 3 and bool(tracker.suspicious[poisoned].all())  # ...and the target at once
    tracker.update(_scores({1: (PER_LABEL, -8.0)}, seed=5)[0])  # the lead gone: the votes decide again
    assert tracker.target == 1


def test_abstaining_falls_back_to_every_label_and_says_it_is_unsure():
    # labels 1 and 3 each hold a low mode of the same size: no label stands out
    scores, labels = _scores({1: (100, -8.0), 3: (100, -8.0)})
    tracker, free = _tracker(labels), detection.EntropyTracker(split="hybrid")
    for _ in range(2):
        tracker.update(scores)
        free.update(scores)
    assert tracker.target == -1
    assert torch.equal(tracker.suspicious, free.suspicious)
    low = (labels == 1) | (labels == 3)
    assert bool(tracker.suspicious[low & (torch.arange(len(labels)) % PER_LABEL < 100)].all())
    assert tracker.confidence()["low_reasons"] == ["no_target"] and tracker.confidence()["low_confidence"]


def test_the_fall_back_never_takes_a_whole_label():
    # no label stands out (1 and 3 alike), and the victim is sure of all of clean label 2
    scores, labels = _scores({1: (100, -8.0), 3: (100, -8.0), 2: (PER_LABEL, -8.0)})
    capped, free = _tracker(labels, max_label_fraction=0.75), _tracker(labels)
    for _ in range(2):
        capped.update(scores)
        free.update(scores)
    assert capped.target == free.target == -1
    assert int(free.suspicious[labels == 2].sum()) == PER_LABEL
    easy = capped.suspicious[labels == 2]
    assert int(easy.sum()) == int(0.75 * PER_LABEL)
    assert float(scores[labels == 2][easy].max()) <= float(scores[labels == 2][~easy].min())  # its lowest
    low = ((labels == 1) | (labels == 3)) & (torch.arange(len(labels)) % PER_LABEL < 100)
    assert bool(capped.suspicious[low].all())  # the low modes stay whole
    assert torch.equal(capped.suspicious & (labels != 2), free.suspicious & (labels != 2))
    assert torch.equal(capped.victim_set, free.victim_set)  # the victim's set is not capped


def test_the_per_label_cap_leaves_a_named_target_alone():
    scores, labels = _scores({1: (PER_LABEL, -8.0)})  # the victim is sure of all of label 1
    tracker = _tracker(labels, max_label_fraction=0.5, target_rule="votes")
    tracker.votes[1] = 5  # label 1 already named
    tracker.update(scores)
    assert tracker.target == 1 and int(tracker.suspicious.sum()) == PER_LABEL


def test_the_votes_name_a_target_only_with_a_majority():
    # label 2 always holds a low mode of 100 (two modes); at scorings 2, 4 and 5 a whole clean class
    # (4, 1, 3) is as sure and outnumbers it in the victim's set; no label leads in separation by
    # the margin, so each scoring votes for the label most over-represented in the victim's set
    labels = torch.arange(LABELS * PER_LABEL) // PER_LABEL
    tracker = _tracker(labels, target_rule="votes", weight_new=1.0, target_margin=1e9)  # each scoring alone
    targets, shares, low = [], [], []
    for seed, easy in enumerate((None, 4, None, 1, 3)):
        modes = {2: (100, -8.0), **({easy: (PER_LABEL, -8.0)} if easy is not None else {})}
        tracker.update(_scores(modes, seed=seed)[0])
        conf = tracker.confidence()
        targets.append(tracker.target)
        shares.append(conf["vote_share"])
        low.append(conf["low_confidence"])
    assert tracker.votes.tolist() == [0, 1, 2, 1, 1]
    assert targets == [2, -1, 2, -1, -1]  # 1/1, 1/2, 2/3, 2/4, 2/5 of the votes for label 2
    assert shares == [1.0, 0.5, pytest.approx(2 / 3, abs=1e-3), 0.5, 0.4]
    assert low == [False, True, False, True, True]
    assert len(labels[tracker.suspicious].unique()) > 1  # no target: the split draws on every label
    steady = _tracker(labels, target_rule="votes")
    for seed in range(5):
        steady.update(_scores({2: (100, -8.0)}, seed=seed)[0])
    assert steady.confidence()["vote_share"] == 1.0 and not steady.confidence()["low_confidence"]
    assert "vote_share" not in _tracker(labels).confidence()  # the separation rule has no votes


def test_the_report_names_what_made_detection_unsure():
    from vablib import pipeline

    def line(**final):
        return pipeline._confidence_line({"final": {"inferred_target": 0, **final}})

    votes = line(low_confidence=True, low_reasons=["no_target"], split_separation=3.1, vote_share=0.4,
                 inferred_target=-1)
    assert votes.startswith("**Warning: low detection confidence.** No target label stood out (the most-voted "
                            "label won 40% of the scorings' votes), so every label was suspect")
    assert "two modes" not in votes
    both = line(low_confidence=True, low_reasons=["modes", "no_target"], split_separation=1.5, vote_share=0.4,
                inferred_target=-1)
    assert "(separation 1.50 < 2)" in both and "no target label stood out" in both and "40%" in both
    modes = line(low_confidence=True, low_reasons=["modes"], split_separation=1.5, vote_share=0.9)
    assert "(separation 1.50 < 2)" in modes and "stood out" not in modes
    fine = line(low_confidence=False, low_reasons=[], split_separation=3.1, vote_share=0.9)
    assert "Warning" not in fine and "separation 3.10" in fine and "won 90% of the scorings' votes" in fine
    assert "votes" not in line(low_confidence=False, split_separation=3.1)
    scattered = line(low_confidence=True, low_reasons=["scattered"], split_separation=3.1, vote_share=0.9,
                     target_share=0.25)
    assert scattered.startswith("**Warning: low detection confidence.** The target label 0 holds only 25% of the "
                                "victim's own set") and "two modes" not in scattered
    unsaid = line(low_confidence=True, split_separation=3.1)  # a summary without the reasons still warns
    assert unsaid.startswith("**Warning: low detection confidence.** The run did not record why")


def test_a_target_the_victims_set_does_not_single_out_is_low_confidence():
    # every label has a low mode of the same size (an all-to-all attack's poison, or five easy
    # subsets): the named target holds a fifth of the victim's set and leads no other label in
    # separation, though its own scores split (a target that leads may hold less: the test above)
    spread, labels = _scores({k: (60, -8.0) for k in range(LABELS)})
    alone, _ = _scores({0: (60, -8.0)})
    low = torch.arange(len(labels)) % PER_LABEL < 60
    for scores, share in ((spread, 1 / LABELS), (alone, 1.0)):
        tracker = _tracker(labels, target_rule="votes")
        tracker.votes[0] = 5  # label 0 already named by earlier scorings
        tracker.update(scores)
        assert tracker.target == 0 and torch.equal(tracker.victim_set, low if share < 1 else low & (labels == 0))
        conf = tracker.confidence()
        assert conf["split_separation"] > detection.CLEAR_SEPARATION  # label 0's own scores split either way
        assert conf["target_share"] == pytest.approx(share)
        assert conf["low_reasons"] == (["scattered"] if share < detection.MIN_TARGET_SHARE else [])
        assert conf["low_confidence"] == (share < detection.MIN_TARGET_SHARE)


def test_confidence_is_low_on_one_mode_and_high_on_two_without_labels():
    unimodal, _ = _scores({})
    bimodal, _ = _scores({0: (100, -8.0), 1: (100, -8.0)})
    flat, apart = detection.EntropyTracker(split="hybrid"), detection.EntropyTracker(split="hybrid")
    flat.update(unimodal)
    apart.update(bimodal)
    assert flat.confidence()["low_confidence"] and flat.confidence()["separation"] < detection.CLEAR_SEPARATION
    assert flat.confidence()["low_reasons"] == ["modes"]
    assert not apart.confidence()["low_confidence"]
    assert apart.confidence()["separation"] > detection.CLEAR_SEPARATION
    assert "target_margin" not in apart.confidence()  # no labels, no target


def test_tracker_state_keeps_the_target_and_the_confidence():
    scores, labels = _scores({3: (100, -8.0)})
    tracker = _tracker(labels)
    tracker.update(scores)
    other = _tracker(labels)
    other.load_state_dict(tracker.state_dict())
    assert other.target == tracker.target == 3 and other.confidence() == tracker.confidence()


def test_config_names_the_old_rule_and_rejects_bad_values():
    cfg = VabConfig(target_inference="separation")
    tracker = detection.EntropyTracker.from_config(cfg, torch.arange(10) % 2)
    assert tracker.target_rule == "separation" and VabConfig().target_inference == "votes"
    with pytest.raises(ConfigError, match="target_inference"):
        VabConfig(target_inference="majority")
    with pytest.raises(ConfigError, match="target_margin"):
        VabConfig(target_margin=-1.0)
    with pytest.raises(ConfigError, match="max_label_fraction"):
        VabConfig(max_label_fraction=0.0)
    capped = detection.EntropyTracker.from_config(VabConfig(max_label_fraction=0.6), torch.arange(10) % 2)
    assert capped.max_label_fraction == 0.6


# ---------------------------------------------------------------- Fashion-MNIST, offline

def _write_idx(path, array: np.ndarray):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion(folder, n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = data.FASHION_MNIST_FILES[split]
        arrays[split] = (rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10)
        _write_idx(folder / f"{images}.gz", arrays[split][0])
        _write_idx(folder / f"{labels}.gz", arrays[split][1])
    return arrays


def test_fashion_mnist_reads_idx_files_and_keeps_the_first_images(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    arrays = _fake_fashion(tmp_path / "fm")
    ds = data.load_dataset("fashion_mnist", tmp_path / "fm", train_size=7, test_size=3)
    assert ds.x_train.shape == (7, 28, 28, 1) and ds.x_test.shape == (3, 28, 28, 1)
    assert np.array_equal(ds.x_train[..., 0], arrays["train"][0][:7]) and np.array_equal(ds.y_test, arrays["test"][1][:3])
    assert ds.classes == data.FASHION_MNIST_CLASSES and ds.x_train.flags.writeable


def test_fashion_mnist_absent_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_dataset("fashion_mnist", tmp_path / "empty")


def test_subset_sizes_are_checked_before_loading(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    with pytest.raises(ConfigError, match="train_size"):  # not DataNotFoundError: checked first
        data.load_dataset("fashion_mnist", tmp_path / "empty", train_size=0)
    _fake_fashion(tmp_path / "fm")
    with pytest.raises(ConfigError, match=r"test_size must be None .* in \[1, 5\]"):
        data.load_dataset("fashion_mnist", tmp_path / "fm", test_size=6)


def test_idx_with_a_wrong_header_is_refused(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(bytes([0, 0, 0x08, 1]) + (10).to_bytes(4, "big") + b"\0" * 4)
    with pytest.raises(DataFormatError, match="header says"):
        data.read_idx(bad)


@pytest.mark.skipif(data.fashion_mnist_folder(data.DEBIAN_FASHION_MNIST) is None,
                    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
def test_debian_fashion_mnist_loads_offline(tmp_path):
    ds = data.load_dataset("fashion_mnist", tmp_path / "no-data-here", train_size=6000, test_size=1000)
    assert ds.x_train.shape == (6000, 28, 28, 1) and ds.x_test.shape == (1000, 28, 28, 1)
    assert ds.num_classes == 10 and len(np.unique(ds.y_train)) == 10
