import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vablib import runio
from vablib.config import SUPPRESSION_FIELDS, TrainConfig, VabConfig
from vablib.errors import CheckpointError, ConfigError
from vablib.vab import PHASES, VabTrainer

TINY = TrainConfig(model="convnet", width=0.25, epochs=4, batch_size=64)
TINY_VAB = VabConfig(victim_warmup_samples=600, checkpoint_every=1)


def _trainer(data, run=None, cfg=TINY, vcfg=TINY_VAB, seed=0):
    return VabTrainer(data, cfg, vcfg, "cpu", seed, run, progress=False)


def test_budget_milestones_reach_the_beneficiarys_scheduler(poisoned_digits):
    paper = _trainer(poisoned_digits, cfg=TrainConfig(model="convnet", width=0.25, epochs=200), vcfg=VabConfig())
    assert paper.ben_sched.milestones == {50: 1, 100: 1, 150: 1}
    # the beneficiary's own milestones (a list, as a notebook parameter may give them), still scaled
    own = _trainer(poisoned_digits, cfg=TrainConfig(model="convnet", width=0.25, epochs=40),
                   vcfg=VabConfig(beneficiary_milestones=[0.5, 0.75]))
    assert own.vab_cfg.beneficiary_milestones == (0.5, 0.75) and own.ben_sched.milestones == {20: 1, 30: 1}


@pytest.mark.slow
def test_warmup_trains_then_scores_and_each_round_scores_then_trains(poisoned_digits):
    """The victim's order before the beneficiary (vablib.schedule.victim_plan): the warm-up trains
    on everything and scores; the rounds train on the victim's set, then score and train again."""
    t = _trainer(poisoned_digits, vcfg=VabConfig(victim_warmup_samples=600, warmup_rounds=3))
    events = []
    train, update = t.train_victim, t.tracker.update
    t.train_victim = lambda idx, warmup=False: events.append("train_all" if len(idx) == len(t.x) else "train") or \
        train(idx, warmup)
    t.tracker.update = lambda entropy: events.append("score") or update(entropy)
    t.run_phase("warmup")
    assert events == ["train_all", "score"] and len(t.scorings) == 1 and "warmup_victim_steps" in t.scorings[0]
    t.run_phase("rounds")
    assert events[2:] == ["train", "score", "train", "score", "train"]
    assert t.victim.trainings == 4 and t.tracker.scorings == len(t.scorings) == 3
    assert all("victim_steps" in s for s in t.scorings)  # each scoring's record holds the training after it


@pytest.mark.slow
def test_full_run_writes_metrics_in_range_and_checkpoints(tmp_path, poisoned_digits):
    run = runio.RunDir(tmp_path / "run")
    t = _trainer(poisoned_digits, run)
    t.run_phase("suppress")
    assert t.phases_done == list(PHASES) and t.epoch == 4
    rows = runio.read_jsonl(run.path / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["phase"] for r in rows] == ["mix", "mix", "suppress", "suppress"]
    for r in rows:
        for k in ("acc", "asr", "ra", "precision", "recall", "fpr", "f1", "auroc"):
            assert 0.0 <= r[k] <= 1.0, (k, r[k])
        assert r["n_suspicious"] + r["n_credible"] == len(poisoned_digits.y_train)
    for p in PHASES:
        assert (run.checkpoints / f"after_{p}.pt").exists()
    assert len(t.scorings) >= 2 and all(0 <= r["auroc"] <= 1 for r in t.scorings)


def _interrupt_at(epoch):
    def hook(rec):
        if rec["epoch"] == epoch:
            raise KeyboardInterrupt

    return hook


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, poisoned_digits):
    vcfg = VabConfig(victim_warmup_samples=600, checkpoint_every=1)
    whole = _trainer(poisoned_digits, runio.RunDir(tmp_path / "a"), vcfg=vcfg)
    whole.run_phase("suppress")
    expected = runio.read_jsonl(tmp_path / "a" / "metrics.jsonl")

    run_b = runio.RunDir(tmp_path / "b")
    first = _trainer(poisoned_digits, run_b, vcfg=vcfg)
    with pytest.raises(KeyboardInterrupt):
        first.run_phase("suppress", on_epoch=_interrupt_at(3))  # killed after epoch 3's record, before its checkpoint
    second = _trainer(poisoned_digits, run_b, vcfg=vcfg)
    assert second.resume() and second.epoch == 2 and second.phases_done == ["warmup", "rounds", "mix"]
    second.run_phase("suppress")
    got = runio.read_jsonl(run_b.path / "metrics.jsonl")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(got) == strip(expected)
    assert torch.equal(second.suspicious, whole.suspicious)
    for a, b in zip(second.beneficiary.state_dict().values(), whole.beneficiary.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_checkpoint_of_another_configuration_is_refused(tmp_path, poisoned_digits):
    run = runio.RunDir(tmp_path / "r")
    t = _trainer(poisoned_digits, run)
    t.run_phase("warmup")
    with pytest.raises(CheckpointError, match=r"other settings \(seed 0 → 1\)"):
        _trainer(poisoned_digits, run, seed=1).resume()
    with pytest.raises(CheckpointError, match=r"vab.lambda_u 0.1 → 0.2\)"):
        _trainer(poisoned_digits, run, vcfg=dataclasses.replace(TINY_VAB, lambda_u=0.2)).resume()
    # a suppression setting may differ where the caller allows it (benchmarks/vab_suppression.py)
    other = _trainer(poisoned_digits, vcfg=dataclasses.replace(TINY_VAB, lambda_u=0.2))
    other.load_state_dict(runio.load_checkpoint(run.checkpoints / "after_warmup.pt"), allow=SUPPRESSION_FIELDS)
    assert other.phases_done == ["warmup"] and torch.equal(other.suspicious, t.suspicious)


def test_corrupted_checkpoint_is_refused(tmp_path, poisoned_digits):
    run = runio.RunDir(tmp_path / "r")
    (run.checkpoints / "latest.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupted"):
        _trainer(poisoned_digits, run).resume()


@pytest.mark.parametrize("kw", [{"split": "otsu"}, {"ema_weight": 0}, {"victim_model": "vgg"}, {"warmup_rounds": 0},
                                {"mix_fraction": 1.5}, {"temperature": -1}, {"suspect_labels": "all"}, {"victim_width": 0},
                                {"beneficiary_lr": -0.1}, {"pseudo_confidence": 1.5},
                                {"beneficiary_milestones": (0.5, 1.0)}, {"beneficiary_milestones": 0.5}])
def test_bad_vab_settings(kw):
    with pytest.raises(ConfigError):
        VabConfig(**kw)


def test_vab_settings_follow_the_budget():
    assert VabConfig.from_profile("paper") == VabConfig() == VabConfig.from_profile("auto", torch.device("cuda"))
    cpu = VabConfig.from_profile("cpu", warmup_rounds=None, victim_lr=5e-4)  # None: the budget's
    assert (cpu.warmup_rounds, cpu.victim_warmup_samples, cpu.beneficiary_lr, cpu.beneficiary_milestones,
            cpu.victim_lr) == (20, 10_000, 0.1, (0.5, 0.75), 5e-4)
    assert VabConfig.from_profile("auto") == VabConfig.from_profile("cpu")  # "auto" without CUDA
    demo = VabConfig.from_profile("demo")  # the cpu beneficiary schedule, the reference's victim
    assert (demo.beneficiary_lr, demo.beneficiary_milestones, demo.victim_warmup_samples, demo.warmup_rounds) == \
        (0.1, (0.5, 0.75), VabConfig().victim_warmup_samples, VabConfig().warmup_rounds)
    assert VabConfig.from_profile("cpu", beneficiary_milestones=()).beneficiary_milestones == ()
    with pytest.raises(ConfigError, match="profile='laptop' is not known"):
        VabConfig.from_profile("laptop")


@pytest.mark.slow
def test_nan_loss_stops_with_the_epoch_named(tmp_path, poisoned_digits):
    from vablib.errors import TrainingDivergedError

    t = _trainer(poisoned_digits, runio.RunDir(tmp_path / "n"), cfg=TrainConfig(model="convnet", width=0.25, epochs=4,
                                                                                 batch_size=64, lr=10.0))
    t.run_phase("rounds")
    with torch.no_grad():
        for p in t.beneficiary.parameters():
            p.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="AttentionMix epoch 1"):
        t.run_phase("mix")
    assert json.loads(json.dumps(runio.load_checkpoint(tmp_path / "n" / "checkpoints" / "latest.pt")["phases_done"])) == \
        ["warmup", "rounds"]


@pytest.mark.slow
def test_beneficiary_lr_and_suspect_labels_reach_the_optimizer_and_the_split(poisoned_digits):
    shared = _trainer(poisoned_digits)
    assert shared.ben_opt.param_groups[0]["lr"] == TINY.lr
    # a warm-up long enough for the victim to learn the patch (after 600 samples it has not, and
    # the label most over-represented among the low-entropy samples is a clean one)
    own = _trainer(poisoned_digits, vcfg=VabConfig(victim_warmup_samples=5000, beneficiary_lr=0.3))
    assert own.ben_opt.param_groups[0]["lr"] == 0.3 and own.ben_sched.milestones == shared.ben_sched.milestones
    own.run_phase("warmup")
    target = poisoned_digits.y_train[poisoned_digits.poison_mask][0]
    assert own.tracker.target == target and own.scorings[-1]["inferred_target"] == target
    assert bool((own.y[own.suspicious] == target).all())
    assert _trainer(poisoned_digits, vcfg=VabConfig(suspect_labels="any")).tracker.target_labels is None


@pytest.mark.slow
def test_victim_trains_on_its_set_and_the_beneficiary_learns_only_from_credible_samples(poisoned_digits):
    t = _trainer(poisoned_digits)
    t.run_phase("rounds")
    n = len(t.x)
    t.tracker.victim_set = t.poisoned.clone()
    t.tracker.suspicious = t.poisoned | (torch.arange(n) % 7 == 0)  # a larger set, as "either" makes it
    trained = []
    t.train_victim = lambda indices, warmup=False: trained.append(indices) or {}
    t.reselect()
    assert torch.equal(trained[0], torch.nonzero(t.poisoned).flatten())
    t.tracker.victim_set = t.poisoned.clone()
    t.tracker.suspicious = t.poisoned | (torch.arange(n) % 7 == 0)
    trained_on = []

    def count(module, inputs, output):
        if torch.is_grad_enabled():
            trained_on.append(len(inputs[0]))

    t.beneficiary.body[0].register_forward_hook(count)
    t.mix_epoch(1)
    assert sum(trained_on) == 2 * int((~t.tracker.suspicious).sum())  # two views of each credible image


@pytest.mark.slow
def test_no_forward_pass_is_repeated_for_the_same_batch_and_weights(poisoned_digits):
    """AttentionMix and suppression send each labelled view through the beneficiary once without
    gradients (its attention maps) and once with; unlabelled views go through the training pass
    only (their pseudo-labels come from it); the victim sees each plain image whose target
    subtracts its prediction once: the unlabelled ones, and the labelled ones with suppress_labelled."""
    t = _trainer(poisoned_digits)
    t.run_phase("rounds")
    seen = {}

    def count(name):
        def hook(module, inputs, output):
            key = f"{name}_{'grad' if torch.is_grad_enabled() else 'nograd'}"
            seen[key] = seen.get(key, 0) + len(inputs[0])
        return hook

    t.beneficiary.body[0].register_forward_hook(count("beneficiary"))
    t.victim.model.body[0].register_forward_hook(count("victim"))
    n_credible = int((~t.suspicious).sum())
    assert 0 < n_credible < len(t.x)
    t.mix_epoch(1)
    assert seen == {"beneficiary_nograd": 2 * n_credible, "beneficiary_grad": 2 * n_credible}
    seen.clear()
    t.suppress_epoch(t.train_cfg.epochs)
    unlabelled = (seen["beneficiary_grad"] - 2 * n_credible) // 2
    assert unlabelled > 0
    assert seen == {"beneficiary_nograd": 2 * n_credible, "beneficiary_grad": 2 * n_credible + 2 * unlabelled,
                    "victim_nograd": unlabelled}
    seen.clear()
    t.vab_cfg = dataclasses.replace(t.vab_cfg, suppress_labelled=True)
    t.suppress_epoch(t.train_cfg.epochs)
    assert seen["victim_nograd"] == n_credible + unlabelled


def _run_until(run_dir, kill_after: str | None):
    """Run tests/killable_vab_run.py; SIGKILL it right after it prints `kill_after` (None: let it
    finish). Returns the lines it printed."""
    script = Path(__file__).with_name("killable_vab_run.py")
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir)], stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if kill_after is not None and line.startswith(kill_after):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=300)
    assert (proc.returncode == -signal.SIGKILL) if kill_after else proc.returncode == 0, lines
    return lines


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_summary(tmp_path):
    _run_until(tmp_path / "whole", None)
    killed = tmp_path / "killed"
    # killed in the victim warm-up (just after start), after an AttentionMix epoch's record (the
    # checkpoint may or may not be written), and in the first suppression epoch
    assert _run_until(killed, "resumed")[-1] == "resumed False at epoch 0"
    _run_until(killed, "epoch 1")
    assert _run_until(killed, "epoch 3")[0].startswith("resumed True")
    assert _run_until(killed, None)[-1] == "done"

    def comparable(run_dir):
        summary = json.loads((run_dir / "summary.json").read_text())
        rows = runio.read_jsonl(run_dir / "metrics.jsonl")
        drop = lambda d: {k: v for k, v in d.items() if k not in ("seconds", "seconds_per_phase")}  # noqa: E731
        return drop(summary), [drop(r) for r in rows]

    assert comparable(killed) == comparable(tmp_path / "whole")
    assert comparable(killed)[0]["complete"] is True


def _after_one_suppression_epoch(data, **vab):
    """Beneficiary weights after one suppression epoch from the same state (no re-selection)."""
    t = _trainer(data, cfg=TrainConfig(model="convnet", width=0.25, epochs=2, batch_size=64),
                 vcfg=VabConfig(victim_warmup_samples=600, mix_fraction=0.5, lambda_switch=0.0, **vab))
    t.run_phase("mix")
    t.suppress_epoch(2)
    return torch.cat([p.detach().flatten() for p in t.beneficiary.parameters()])


@pytest.mark.slow
def test_pseudo_confidence_and_suppress_labelled_reach_the_suppression_loss(poisoned_digits):
    assert SUPPRESSION_FIELDS <= set(VabConfig.field_names())
    gated = _after_one_suppression_epoch(poisoned_digits, pseudo_confidence=1.0, lambda_u_late=0.5)
    no_unlabelled_loss = _after_one_suppression_epoch(poisoned_digits, lambda_u_late=0.0)
    ungated = _after_one_suppression_epoch(poisoned_digits, pseudo_confidence=0.0, lambda_u_late=0.5)
    torch.testing.assert_close(gated, no_unlabelled_loss)  # nothing reaches a confidence of 1: no unlabelled loss
    assert not torch.allclose(gated, ungated)
    subtracted = _after_one_suppression_epoch(poisoned_digits, lambda_u_late=0.0, suppress_labelled=True)
    assert not torch.allclose(subtracted, no_unlabelled_loss)
