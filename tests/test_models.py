import pytest
import torch

from vablib.errors import ConfigError
from vablib.models import MODELS, build_model


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_forward_and_features_compose(name, channels, size):
    torch.manual_seed(0)
    net = build_model(name, num_classes=7, in_channels=channels, width=0.25).eval()
    x = torch.randn(3, channels, size, size)
    out = net(x)
    assert out.shape == (3, 7)
    feats = net.features(x)
    assert feats.ndim == 4 and feats.shape[1] == net.feature_channels
    torch.testing.assert_close(net.head(net.pool(feats)), out)


def test_width_multiplier_narrows_the_model():
    wide = sum(p.numel() for p in build_model("resnet18", 10, 3, 1.0).parameters())
    narrow = sum(p.numel() for p in build_model("resnet18", 10, 3, 0.25).parameters())
    assert 10_000_000 < wide < 12_000_000 and narrow < wide / 10


def test_unknown_model_lists_known_ones():
    with pytest.raises(ConfigError, match="resnet18.*preact_resnet18"):
        build_model("vgg16", 10)


@pytest.mark.parametrize("kw", [{"num_classes": 1}, {"in_channels": 4}, {"width": 0}, {"width": "wide"}])
def test_bad_model_arguments(kw):
    args = {"num_classes": 10, "in_channels": 3, "width": 1.0, **kw}
    with pytest.raises(ConfigError):
        build_model("convnet", **args)
