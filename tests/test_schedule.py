"""The V&B schedule is arithmetic on the run's epochs and the V&B settings: no model, no data."""
from vablib.config import VabConfig
from vablib.schedule import Schedule, victim_plan


def test_the_papers_schedule_at_200_epochs():
    s = Schedule(200, VabConfig())
    assert s.mix_epochs == 100 and s.reselect_interval == 5
    assert [e for e in range(1, 101) if s.reselects_before(e)] == list(range(6, 101, 5))  # every 5 epochs
    assert all(s.reselects_before(e) for e in range(101, 201))  # every suppression epoch
    assert [s.phase_of(e) for e in (1, 100, 101, 200)] == ["mix", "mix", "suppress", "suppress"]
    assert s.lambda_u(150) == 0.1 and s.lambda_u(151) == 0.5


def test_short_schedules_scale_the_fractions():
    s = Schedule(8, VabConfig())
    assert s.mix_epochs == 4 and s.reselect_interval == 1  # 0.025 × 8 rounds to 0: at least every epoch
    assert not s.reselects_before(1) and all(s.reselects_before(e) for e in range(2, 9))
    assert s.lambda_u(6) == 0.1 and s.lambda_u(7) == 0.5  # the switch at 0.75 × 8 = 6
    assert Schedule(12, VabConfig(mix_fraction=0.25)).mix_epochs == 3


def test_victim_budget_is_counted_in_samples():
    s = Schedule(200, VabConfig(victim_warmup_samples=50_000, victim_batch_size=128))
    assert s.victim_steps(300, warmup=True) == 391  # the paper's one epoch of CIFAR-10, whatever the dataset size
    assert s.victim_steps(100) == 1  # a later training: one pass over the victim's set
    assert Schedule(200, VabConfig(victim_round_epochs=3.0)).victim_steps(300) == 8  # ceil(900 / 128)
    assert Schedule(200, VabConfig(victim_warmup_samples=0)).victim_steps(1797, warmup=True) == 15  # one pass


def test_victim_plan_orders_training_and_scoring():
    assert victim_plan("warmup", 2) == ["train_all", "score"]
    assert victim_plan("rounds", 1) == ["train"]
    assert victim_plan("rounds", 3) == ["train", "score", "train", "score", "train"]
