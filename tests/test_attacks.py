"""Poisoning attacks: counts, labels, changed pixels, ranges, determinism, errors, plug-in, artifact."""
import numpy as np
import pytest

from vablib import attacks as A
from vablib.attacks import triggers as T
from vablib.attacks.gallery import subset
from vablib.data import ImageDataset
from vablib.errors import ConfigError, DataNotFoundError
from vablib.runio import RunDir

# Tiny budgets for the attacks that train, so each generates in about a second on digits.
TINY = {
    "cl": {"clean_epochs": 1, "clean_width": 0.25, "pgd_steps": 2},
    "iad": {"generator_epochs": 1, "mask_epochs": 1, "generator_width": 0.125, "classifier_width": 0.25},
}
RATES = {"badnets": 0.1, "blended": 0.1, "sig": 0.5, "cl": 0.5, "wanet": 0.1, "iad": 0.1}
# the input-aware attack trains a trigger generator: several seconds even at the tiny budget
ALL_ATTACKS = [pytest.param(name, marks=pytest.mark.slow) if name == "iad" else name for name in A.ATTACKS]


@pytest.fixture(scope="module")
def small(digits):
    return subset(digits, n_train=200, n_test=60, seed=1)


def _cfg(name, **kw):
    kw.setdefault("poison_rate", RATES[name])
    kw.setdefault("attack_params", dict(TINY.get(name, {})))
    return A.AttackConfig(name, **kw)


@pytest.fixture(scope="module")
def generated(small):
    cache = {}

    def get(name, seed=0):
        if (name, seed) not in cache:
            cache[name, seed] = A.generate(small, _cfg(name), seed, device="cpu", progress=False)
        return cache[name, seed]
    return get


@pytest.mark.parametrize("name", ALL_ATTACKS)
def test_poison_count_labels_and_changed_pixels(name, small, generated):
    d = generated(name)
    cfg = _cfg(name)
    target_pool = small.y_train == 0
    base = int(target_pool.sum()) if cfg.clean_label else len(small.y_train)
    assert d.poison_mask.sum() == round(cfg.poison_rate * base)
    changed_labels = d.y_train != d.y_train_clean
    if cfg.clean_label:
        assert not changed_labels.any()
        assert (d.y_train_clean[d.poison_mask] == 0).all()
    else:
        assert (changed_labels == d.poison_mask).all()  # dirty-label all2one draws from non-target classes
        assert (d.y_train[d.poison_mask] == 0).all()
    changed_images = (d.x_train != small.x_train).any(axis=(1, 2, 3))
    assert not (changed_images & ~(d.poison_mask | d.noise_mask)).any()
    assert changed_images[d.poison_mask].mean() > 0.9  # the trigger does change the poisoned images
    assert not (d.poison_mask & d.noise_mask).any()
    assert (d.y_train[d.noise_mask] == d.y_train_clean[d.noise_mask]).all()  # noise/cross keep labels
    for x in (d.x_train, d.x_bd_test):
        assert x.dtype == np.uint8 and x.shape[1:] == small.image_shape
    assert (d.y_bd_true != 0).all() and (d.y_bd_target == 0).all()
    assert len(d.x_bd_test) == int((small.y_test != 0).sum())
    assert (d.clean_train_images() == small.x_train).all()
    assert d.manifest["fingerprint"] == small.fingerprint()
    assert d.manifest["poison_indices"] == np.flatnonzero(d.poison_mask).tolist()


@pytest.mark.parametrize("name, fraction", [("wanet", 0.2), pytest.param("iad", 0.1, marks=pytest.mark.slow)])
def test_noise_and_cross_samples(generated, small, name, fraction):
    d = generated(name)
    assert d.noise_mask.sum() == round(fraction * len(small.y_train))
    assert (d.x_train[d.noise_mask] != small.x_train[d.noise_mask]).any(axis=(1, 2, 3)).mean() > 0.9


@pytest.mark.parametrize("name", ALL_ATTACKS)
def test_same_seed_same_data_other_seed_other_indices(name, small, generated):
    a = generated(name)
    np.random.seed(123)  # global state must not matter
    b = A.generate(small, _cfg(name), 0, device="cpu", progress=False)
    for field in ("x_train", "y_train", "poison_mask", "noise_mask", "x_bd_test", "y_bd_target"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert a.manifest["content_hash"] == b.manifest["content_hash"]
    if name in ("badnets", "blended", "wanet"):  # cheap: check that the seed matters
        assert not np.array_equal(a.poison_mask, generated(name, seed=1).poison_mask)


def test_all2all_labels_and_triggered_test_set(small):
    d = A.generate(small, A.AttackConfig("badnets", 0.2, attack_mode="all2all"), 0, progress=False)
    k = small.num_classes
    assert (d.y_train[d.poison_mask] == (d.y_train_clean[d.poison_mask] + 1) % k).all()
    assert d.poison_mask.sum() == round(0.2 * len(small.y_train))
    assert len(d.x_bd_test) == len(small.y_test)
    assert (d.y_bd_target == (small.y_test + 1) % k).all() and (d.y_bd_true == small.y_test).all()


def test_sig_is_signed_and_clipped_not_wrapped():
    grey = np.full((2, 8, 16, 3), 128, np.uint8)
    out = T.add_sinusoid(grey, 20, 2)
    assert out.min() == 108 and out.max() == 148
    black = np.zeros((1, 8, 16, 1), np.uint8)
    dark = T.add_sinusoid(black, 20, 2)
    assert dark.max() <= 20  # the negative half is clipped to 0, never wrapped to ~236
    assert (dark[0, :, :, 0] == dark[0, :1, :, 0]).all()  # horizontal signal: the same in every row


@pytest.mark.parametrize("name", ALL_ATTACKS)
@pytest.mark.parametrize("shape", [(4, 28, 28, 1), (4, 32, 32, 3), (4, 20, 24, 3)])
def test_triggers_work_for_any_image_size(shape, name):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    y = np.arange(4) % 2
    ds = ImageDataset("toy", np.concatenate([x] * 10), np.tile(y, 10), x, y, ("a", "b"))
    d = A.generate(ds, _cfg(name, poison_rate=0.5, attack_params=dict(TINY.get(name, {}))), 0, progress=False)
    assert d.x_train.shape == ds.x_train.shape and d.x_bd_test.shape[1:] == shape[1:]


def test_patch_and_blend_image_parameters():
    x = np.zeros((2, 32, 32, 3), np.uint8)
    patch = T.make_patch(3, 3, "checkerboard")
    row, col = T.patch_origin("bottom_right", (32, 32), 3)
    out = T.paste_patch(x, patch, row, col)
    assert (row, col) == (28, 28) and (out[:, 28:31, 28:31] == patch).all() and out.sum() == 2 * patch.sum()
    assert T.blend(np.full((1, 4, 4, 1), 100, np.uint8), np.full((4, 4, 1), 200, np.uint8), 0.1).max() == 110


@pytest.mark.parametrize("name", A.ATTACKS)
def test_cpu_settings_are_valid_for_32x32_images(name):
    """The benchmark settings of every attack pass every check the attack makes on CIFAR-shaped data."""
    cfg = A.AttackConfig(name, target_label=0, **A.CPU_SETTINGS[name])
    if cfg.spec.shape_check is not None:
        cfg.spec.shape_check(cfg.params(), (32, 32, 3))
    assert set(A.CPU_SETTINGS) == set(A.ATTACKS)


@pytest.mark.parametrize("kwargs, match", [
    ({"poison_rate": 0.0}, "poison_rate"),
    ({"poison_rate": 1.5}, "poison_rate"),
    ({"attack": "nope"}, "unknown attack 'nope'"),
    ({"target_label": -1}, "target_label"),
    ({"attack_mode": "some2one"}, "attack_mode"),
    ({"attack_budget": "huge"}, "attack_budget"),
    ({"attack_params": {"alpha": 0.2}}, "are not settings of badnets; its settings are: location, patch"),
    ({"attack_params": {"patch_size": 0}}, "patch_size"),
    ({"attack": "sig", "attack_mode": "all2all"}, "clean-label"),
])
def test_bad_config_values_raise_one_clear_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        A.AttackConfig(**kwargs)


@pytest.mark.parametrize("cfg, match", [
    (A.AttackConfig("badnets", target_label=10), "target_label=10 is out of range"),
    (A.AttackConfig("badnets", attack_params={"patch": np.zeros((2, 3, 1))}), "must be a 2×2×1"),
    (A.AttackConfig("blended", attack_params={"pattern": np.zeros((16, 16, 3))}), "32×32×1"),
    (A.AttackConfig("badnets", attack_params={"patch_size": 40}), "does not fit"),
    (A.AttackConfig("badnets", poison_rate=0.95), "only"),
    (A.AttackConfig("cl", poison_rate=0.001), "poisons no sample"),
])
def test_data_dependent_errors_come_before_any_work(cfg, match, small, monkeypatch):
    def never(ctx):
        raise AssertionError("the attack was built before the parameters were checked")
    monkeypatch.setattr(cfg.spec, "build", never)
    with pytest.raises(ConfigError, match=match):
        A.generate(small, cfg, 0, progress=False)


def test_custom_attack_plugs_in_like_a_builtin(small):
    def stripe(x):
        out = x.copy()
        out[:, ::4, :, :] = 255
        return out

    attack = A.custom_attack("stripe_test", stripe)
    assert "stripe_test" in A.available_attacks() and not attack.clean_label
    d = A.generate(small, A.AttackConfig("stripe_test", 0.1, target_label=3), 0, progress=False)
    assert (d.x_train[d.poison_mask][:, ::4] == 255).all() and (d.y_train[d.poison_mask] == 3).all()
    assert (d.x_bd_test[:, ::4] == 255).all() and "def stripe" in d.manifest["trigger_info"]["function"]

    A.custom_attack("stripe_clean", stripe, clean_label=True)
    c = A.generate(small, A.AttackConfig("stripe_clean", 0.5, target_label=3), 0, progress=False)
    assert (c.y_train == c.y_train_clean).all() and (c.y_train_clean[c.poison_mask] == 3).all()


def test_custom_attack_errors(small):
    with pytest.raises(ConfigError, match="built-in"):
        A.custom_attack("badnets", lambda x: x)
    with pytest.raises(ConfigError, match="identifier"):
        A.custom_attack("my attack", lambda x: x)
    A.custom_attack("bad_dtype_test", lambda x: x.astype(np.float32))
    with pytest.raises(ConfigError, match="must return a uint8 batch"):
        A.generate(small, A.AttackConfig("bad_dtype_test"), 0, progress=False)


def test_artifact_round_trip_and_missing_error(tmp_path, generated):
    run = RunDir(tmp_path / "run")
    with pytest.raises(DataNotFoundError, match="01_generate_poisoned_dataset"):
        A.PoisonedData.load(run)
    d = generated("wanet")
    d.save(run)
    back = A.PoisonedData.load(run)
    for field in ("x_train", "y_train", "y_train_clean", "poison_mask", "noise_mask", "x_test", "y_test",
                  "x_bd_test", "y_bd_target", "y_bd_true", "x_orig_changed"):
        assert np.array_equal(getattr(d, field), getattr(back, field)), field
        assert getattr(back, field).dtype == getattr(d, field).dtype
    assert back.classes == d.classes and back.num_classes == 10 and back.dataset_name == d.dataset_name
    assert back.manifest["attack"] == "wanet" and back.manifest["seed"] == 0


@pytest.mark.slow
def test_cl_clean_model_is_cached_by_key(tmp_path, small):
    run = RunDir(tmp_path / "run")
    cfg = _cfg("cl")
    first = A.generate(small, cfg, 0, run=run, progress=False)
    again = A.generate(small, cfg, 0, run=run, progress=False)
    assert not first.manifest["trigger_info"]["clean_model_cached"]
    assert again.manifest["trigger_info"]["clean_model_cached"]
    assert np.array_equal(first.x_train, again.x_train)
    other = A.generate(small, _cfg("cl", attack_params={**TINY["cl"], "clean_epochs": 2}), 0, run=run, progress=False)
    assert not other.manifest["trigger_info"]["clean_model_cached"]
    assert len(list(run.checkpoints.glob("cl_clean_model_*.pt"))) == 2


def test_gallery_and_statistics(generated):
    d = generated("badnets")
    clean, poisoned = A.poisoned_examples(d, 4)
    fig = A.attack_gallery(clean, poisoned, title="badnets")
    assert len(fig.axes) == 12
    table = A.poison_table(d)
    assert table["poisoned"].sum() == d.poison_mask.sum() and table["labels after"][0] > table["labels before"][0]
    summary = A.poison_summary(d)
    assert summary["poisoned"] == d.poison_mask.sum() and summary["labels changed"] == d.poison_mask.sum()
    assert 0 < summary["mean |Δ| (0-255)"] <= 255
