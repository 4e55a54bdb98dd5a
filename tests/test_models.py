"""Model registry, architectures (exact parameter counts, stable names) and FLOP counting."""

import math

import pytest
import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.models import (
    MODELS,
    build_model,
    count_nonzero,
    count_parameters,
    dense_flops,
    layer_flops,
    register_model,
    sparse_flops,
)
from prunezoo.models.registry import register_alias

# Natural input shape of every registered model, plus another shape it should adapt to (or None).
SHAPES = {
    "mlp": ((1, 28, 28), (1, 8, 8)),
    "lenet-300-100": ((1, 28, 28), (1, 8, 8)),
    "gmm-mlp": ((100,), (20,)),
    "lenet5": ((1, 28, 28), (3, 32, 32)),
    "cnn-s": ((1, 28, 28), (3, 28, 28)),
    "cnn-l": ((3, 32, 32), (1, 28, 28)),
    "conv1d": ((1, 40), (1, 72)),
    "resnet-cifar": ((3, 32, 32), (1, 28, 28)),
    "resnet20": ((3, 32, 32), (1, 8, 8)),
    "resnet32": ((3, 32, 32), None),
    "resnet44": ((3, 32, 32), None),
    "resnet56": ((3, 32, 32), None),
    "resnet110": ((3, 32, 32), None),
    "resnet18-cifar": ((3, 32, 32), (1, 28, 28)),
    "vgg16-cifar": ((3, 32, 32), (1, 64, 64)),
    "transformer": ((32,), (16,)),  # token ids (T,)
}


def test_every_registered_model_has_shapes():
    assert set(MODELS) <= set(SHAPES), f"add shapes for {sorted(set(MODELS) - set(SHAPES))}"


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_builds_and_forwards(name):
    torch.manual_seed(0)
    for shape in filter(None, SHAPES[name]):
        num_classes = 2 if name == "gmm-mlp" else 7
        model = build_model(name, num_classes=num_classes, input_shape=shape)
        tokens = getattr(model, "prunezoo_input_dtype", None) == torch.long
        out = model(torch.randint(1, 40, (2, *shape)) if tokens else torch.randn(2, *shape))
        assert out.shape == (2, num_classes)
        assert torch.isfinite(out).all()


def test_conv1d_accepts_inputs_without_channel_axis():
    model = build_model("conv1d", input_shape=(40,))
    assert model(torch.randn(3, 40)).shape == (3, 10)
    assert build_model("conv1d", input_shape=(1, 40))(torch.randn(3, 40)).shape == (3, 10)


@pytest.mark.parametrize(
    ("name", "shape", "options", "expected"),
    [
        ("lenet-300-100", (1, 28, 28), {}, 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10),
        ("lenet5", (1, 28, 28), {"variant": "classic"}, 61_706),
        ("lenet5", (1, 28, 28), {"variant": "caffe"}, 431_080),
        ("cnn-s", (1, 28, 28), {}, 2_464),
        ("cnn-s", (3, 28, 28), {}, 2_864),
        ("cnn-s", (1, 28, 28), {"dropout": 0.5}, 2_464),
        ("cnn-l", (3, 32, 32), {}, 10_853),
        ("conv1d", (1, 40), {}, 5_210),
        ("resnet20", (3, 32, 32), {}, 272_474),
        ("resnet20", (3, 32, 32), {"shortcut": "A"}, 269_722),
        ("resnet18-cifar", (3, 32, 32), {}, 11_173_962),
    ],
)
def test_parameter_counts(name, shape, options, expected):
    assert count_parameters(build_model(name, input_shape=shape, **options)) == expected


def test_vgg16_prunable_weights():
    model = build_model("vgg16-cifar", input_shape=(3, 32, 32))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and all(c.bias is None for c in convs)
    weights = sum(c.weight.numel() for c in convs) + model.fc.weight.numel()
    assert weights == count_parameters(model, prunable_only=True) == 14_715_584


def test_mlp_shapes_and_options():
    m = build_model("mlp", hidden=[50], bias=False, activation="tanh", num_classes=2, input_shape=(100,))
    assert [(n, tuple(p.shape)) for n, p in m.named_parameters()] == [
        ("fc1.weight", (50, 100)),
        ("fc2.weight", (2, 50)),
    ]
    assert isinstance(m.act1, nn.Tanh)
    assert [n for n, _ in build_model("mlp", hidden=[]).named_parameters()] == ["fc1.weight", "fc1.bias"]
    gmm = build_model("gmm-mlp", num_classes=2, input_shape=(100,), hidden=[8])
    assert [tuple(p.shape) for p in gmm.parameters()] == [(8, 100), (2, 8)]


def test_parameter_names_are_stable():
    names = lambda m: [n for n, _ in m.named_parameters()]
    assert names(build_model("lenet-300-100")) == [f"fc{i}.{k}" for i in (1, 2, 3) for k in ("weight", "bias")]
    zoo = [f"{layer}.{k}" for layer in ("conv1", "conv2", "conv3", "fc1", "fc2") for k in ("weight", "bias")]
    assert names(build_model("cnn-s")) == names(build_model("cnn-s", dropout=0.5)) == zoo
    assert names(build_model("cnn-l", input_shape=(3, 32, 32), dropout=0.5)) == zoo
    assert names(build_model("lenet5", variant="caffe"))[-2:] == ["fc2.weight", "fc2.bias"]
    r = build_model("resnet20", input_shape=(3, 32, 32))
    assert "layer2.0.shortcut.conv.weight" in names(r) and "fc.weight" in names(r)
    assert "features.conv13.weight" in names(build_model("vgg16-cifar", input_shape=(3, 32, 32)))
    # Same seed, same builder -> same state dict (keys and values).
    torch.manual_seed(3)
    a = build_model("cnn-l", input_shape=(3, 32, 32)).state_dict()
    torch.manual_seed(3)
    b = build_model("cnn-l", input_shape=(3, 32, 32)).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "init", ["kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal", "uniform", "normal"]
)
def test_init_schemes(init):
    torch.manual_seed(0)
    m = build_model("cnn-s", init=init)
    for layer in (m.conv1, m.conv3, m.fc1, m.fc2):
        assert torch.all(layer.bias == 0.01)
    if init == "uniform":  # U(0, 1), not a scaled variant
        assert m.fc1.weight.min() >= 0 and m.fc1.weight.max() <= 1
    if init == "normal":
        assert 0.7 < m.conv2.weight.std() < 1.3


def test_residual_shortcut_a_has_no_parameters():
    r = build_model("resnet-cifar", depth=20, shortcut="A", input_shape=(3, 32, 32))
    assert not any("shortcut" in n for n, _ in r.named_parameters())
    assert r(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_width_options():
    wide = build_model("resnet-cifar", depth=8, width=32, input_shape=(3, 32, 32))
    assert wide.fc.in_features == 128
    half = build_model("resnet18-cifar", width_multiplier=0.5, input_shape=(3, 32, 32))
    assert half.fc.in_features == 256
    assert build_model("conv1d", channels=8, input_shape=(1, 40)).fc.in_features == 8 * 5


# ---------------------------------------------------------------- errors


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match="unknown model 'nope'.*mlp"):
        build_model("nope")


@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        ("mlp", {"widths": [3]}, "widths"),
        ("mlp", {"hidden": 300}, "hidden"),
        ("mlp", {"hidden": [0]}, "hidden"),
        ("mlp", {"activation": "swish"}, "activation"),
        ("mlp", {"init": "orthogonal"}, "init"),
        ("lenet5", {"variant": "modern"}, "variant"),
        ("cnn-s", {"dropout": 1.5}, "dropout"),
        ("resnet-cifar", {"depth": 21}, "depth"),
        ("resnet-cifar", {"shortcut": "C"}, "shortcut"),
        ("resnet20", {"depth": 56}, "depth"),
        ("lenet-300-100", {"hidden": [10]}, "hidden"),
        ("vgg16-cifar", {"width": 2}, "width"),
    ],
)
def test_bad_options_name_the_option(name, options, field):
    with pytest.raises(ValueError, match=field) as info:
        build_model(name, input_shape=(3, 32, 32), **options)
    assert isinstance(info.value, ConfigError) and info.value.field == f"model.options.{field}"


def test_alias_accepts_its_own_fixed_value():
    assert count_parameters(build_model("resnet20", depth=20, input_shape=(3, 32, 32))) == 272_474
    assert count_parameters(build_model("lenet-300-100", hidden=(300, 100))) == 266_610


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("cnn-s", (784,)),
        ("vgg16-cifar", (3, 28, 28)),
        ("cnn-l", (3, 8, 8)),
        ("conv1d", (1, 28, 28)),
        ("mlp", ()),
        ("mlp", (0, 3)),
    ],
)
def test_bad_input_shapes(name, shape):
    with pytest.raises(ConfigError, match="input_shape"):
        build_model(name, input_shape=shape)


def test_bad_num_classes():
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("mlp", num_classes=0)


def test_register_model_and_alias():
    @register_model("_test-tiny", overwrite=True)
    def tiny(*, num_classes, input_shape, width: int = 4):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.Linear(width, num_classes))

    try:
        register_alias("_test-tiny8", "_test-tiny", fixed={"width": 8}, overwrite=True)
        assert MODELS["_test-tiny"].options == {"width": 4}
        assert build_model("_test-tiny8", input_shape=(5,))[1].out_features == 8
        with pytest.raises(ValueError, match="already registered"):
            register_model("_test-tiny", tiny)
        with pytest.raises(TypeError, match="keyword-only"):
            register_model("_test-bad", lambda num_classes, input_shape, width=3: None)
    finally:
        MODELS.pop("_test-tiny", None)
        MODELS.pop("_test-tiny8", None)


# ---------------------------------------------------------------- FLOPs


def test_linear_flops_are_two_macs():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300))
    assert layer_flops(model, (1, 28, 28)) == {"1.weight": 2 * 784 * 300}
    assert dense_flops(model, (784,)) == 2 * 784 * 300


def test_layer_flops_of_a_conv_net():
    model = build_model("lenet5", variant="caffe")
    flops = layer_flops(model, (1, 28, 28))
    assert list(flops) == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    assert flops["conv1.weight"] == 2 * (20 * 1 * 5 * 5) * 24 * 24
    assert flops["conv2.weight"] == 2 * (50 * 20 * 5 * 5) * 8 * 8
    assert flops["fc1.weight"] == 2 * 800 * 500
    assert sum(flops.values()) == dense_flops(model, (1, 28, 28))


def test_sparse_flops_scale_with_density():
    model = build_model("lenet-300-100")
    shape = (1, 28, 28)
    flops, dense = layer_flops(model, shape), dense_flops(model, shape)
    assert sparse_flops(model, shape) == dense  # a dense model, measured
    assert sparse_flops(model, shape, {"fc1.weight": 0.5}) == dense - flops["fc1.weight"] // 2
    half = {k: 0.5 for k in flops}
    assert sparse_flops(model, shape, half) == dense // 2
    with torch.no_grad():  # measured density: zero half of fc2's entries
        model.fc2.weight.view(-1)[: model.fc2.weight.numel() // 2] = 0
    assert sparse_flops(model, shape) == dense - flops["fc2.weight"] // 2
    assert count_nonzero(model) == count_parameters(model) - model.fc2.weight.numel() // 2
    with pytest.raises(ValueError, match="unknown layers"):
        sparse_flops(model, shape, {"fc9.weight": 0.5})
    with pytest.raises(ValueError, match="must be in"):
        sparse_flops(model, shape, {"fc1.weight": 1.5})


def test_flop_counting_does_not_mutate_the_model():
    model = build_model("resnet20", input_shape=(3, 32, 32))
    model.train()
    model.layer1.eval()  # mixed modes must be restored exactly
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    layer_flops(model, (3, 32, 32))
    sparse_flops(model, (3, 32, 32))
    assert [m.training for m in model.modules()] == modes
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BN running stats
    assert all(p.grad is None for p in model.parameters())


def test_resnet_flops_are_mostly_conv_and_linear():
    model = build_model("resnet20", input_shape=(3, 32, 32))
    flops = layer_flops(model, (3, 32, 32))
    assert "layer3.0.shortcut.conv.weight" in flops
    assert sum(flops.values()) == dense_flops(model, (3, 32, 32))  # BN/ReLU/add/pool count 0
    assert 80e6 < dense_flops(model, (3, 32, 32)) < 83e6  # ~41M MACs, the published ResNet-20 figure
