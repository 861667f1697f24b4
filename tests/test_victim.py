import pytest
import torch

from vablib.batches import Normalizer
from vablib.config import TrainConfig, VabConfig
from vablib.detection import score_entropy
from vablib.victim import Victim, recompute_batchnorm

NORMALIZE = Normalizer(torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25))


def _images(n: int, seed: int = 0, high: int = 256) -> torch.Tensor:
    return torch.randint(0, high, (n, 3, 8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_recomputed_batchnorm_statistics_are_the_whole_sets_and_leave_mode_and_momentum():
    bn = torch.nn.BatchNorm2d(3)
    model = torch.nn.Sequential(bn).eval()
    bn.running_mean.fill_(5.0)  # stale statistics of another set
    x = _images(300)
    recompute_batchnorm(model, x, NORMALIZE, batch_size=100)
    z = NORMALIZE(x)
    assert torch.allclose(bn.running_mean, z.mean(dim=(0, 2, 3)), atol=1e-5)
    batch_vars = torch.stack([b.transpose(0, 1).flatten(1).var(dim=1) for b in z.split(100)])  # unbiased, per batch
    assert torch.allclose(bn.running_var, batch_vars.mean(0), atol=1e-5)
    assert not model.training and bn.momentum == 0.1


def test_a_last_batch_of_one_image_joins_the_one_before():
    bn = torch.nn.BatchNorm2d(3)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), bn)  # one value per channel and image
    x = _images(129)
    recompute_batchnorm(model, x, NORMALIZE, batch_size=128)  # alone, the 129th image's batch would raise
    assert torch.allclose(bn.running_mean, NORMALIZE(x).mean(dim=(0, 2, 3)), atol=1e-5)


def _victim(batchnorm: str) -> Victim:
    torch.manual_seed(0)
    cfg = VabConfig(victim_batchnorm=batchnorm, victim_batch_size=32)
    return Victim.build(TrainConfig(model="convnet", width=0.25, amp=False), cfg, 10, 3, torch.device("cpu"),
                        torch.contiguous_format)


def test_the_victim_scores_with_the_whole_sets_statistics_unless_told_to_keep_its_trainings():
    x, y = torch.cat([_images(64, 1, high=64), _images(192, 2)]), torch.randint(0, 10, (256,))
    own_set = torch.arange(64)  # the victim trains on dark images only: its running statistics are theirs
    entropies = {}
    for rule in ("whole_set", "running"):
        victim = _victim(rule)
        victim.train(x, y, NORMALIZE, own_set, steps=4, seed=0)
        trained = {k: v.clone() for k, v in victim.model.state_dict().items()}
        entropies[rule] = victim.entropy(x, NORMALIZE)
        if rule == "running":  # the trained statistics, untouched
            assert all(torch.equal(v, victim.model.state_dict()[k]) for k, v in trained.items())
            assert torch.equal(entropies[rule], score_entropy(victim.model, x, NORMALIZE))
        else:
            expected = _victim(rule).model
            expected.load_state_dict(trained)
            recompute_batchnorm(expected, x, NORMALIZE, 32, amp=False)
            assert all(torch.equal(v, victim.model.state_dict()[k]) for k, v in expected.state_dict().items())
    assert not torch.allclose(entropies["whole_set"], entropies["running"])


@pytest.mark.parametrize("value", ["batch", None, 1])
def test_an_unknown_batchnorm_rule_is_refused(value):
    from vablib.errors import ConfigError

    with pytest.raises(ConfigError, match="victim_batchnorm"):
        VabConfig(victim_batchnorm=value)
