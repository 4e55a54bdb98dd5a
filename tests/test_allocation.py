import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunezoo.allocation import SCHEME_NAMES, allocate, layer_densities
from prunezoo.errors import ConfigError
from prunezoo.models import build_model
from prunezoo.pruning import prune, random_er_masks

MLP = {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}

# shared/reference/random-pruning-densities.md, tolerance 1e-4
FIXTURES = {
    0.1: dict(balanced=[0.0377, 0.2958, 1.0], realized=0.07042, p1=0.111586, erk=[0.0796, 0.2302, 1.0]),
    0.05: dict(balanced=[0.0189, 0.1479, 1.0], realized=0.03709, p1=0.056187, erk=[0.0385, 0.1113, 0.9185]),
    0.01: dict(balanced=[0.0038, 0.0296, 0.8873], realized=0.0100, p1=0.011302, erk=[0.0077, 0.0223, 0.1837]),
}


@pytest.fixture(scope="module")
def mlp():
    return build_model("lenet-300-100")


@pytest.fixture(scope="module")
def vgg():
    return build_model("vgg16-cifar", num_classes=10, input_shape=(3, 32, 32))


@pytest.mark.parametrize("p", sorted(FIXTURES))
def test_reference_fixtures_mlp(mlp, p):
    fx = FIXTURES[p]
    bal = allocate(mlp, p, "balanced")
    assert list(bal.densities.values()) == pytest.approx(fx["balanced"], abs=1e-4)
    assert bal.realized_density == pytest.approx(fx["realized"], abs=1e-4)
    pyr = layer_densities(mlp, p, "pyramidal")
    p1 = pyr["fc1.weight"]
    assert p1 == pytest.approx(fx["p1"], abs=1e-4)
    assert list(pyr.values()) == pytest.approx([p1, p1**2, p1**3], rel=1e-9)
    erk = allocate(mlp, p, "erk")
    assert list(erk.densities.values()) == pytest.approx(fx["erk"], abs=1e-4)
    assert erk.realized_density == pytest.approx(p, rel=1e-9)


def test_reference_fixtures_vgg16(vgg):
    pyr = layer_densities(vgg, 0.1, "pyramidal")
    assert len(pyr) == 14 and sum(p.numel() for p in vgg.parameters() if p.dim() > 1) == 14_715_584
    assert pyr["features.conv1.weight"] == pytest.approx(0.783743, abs=1e-4)
    assert allocate(vgg, 0.1, "balanced").realized_density == pytest.approx(0.0794, abs=1e-4)


def test_shapes_mapping_works_like_a_model(mlp):
    assert layer_densities(MLP, 0.05, "erk") == pytest.approx(layer_densities(mlp, 0.05, "erk"))


def test_balanced_redistribution_meets_target_and_logs_realized():
    plain = allocate(MLP, 0.1, "balanced")
    red = allocate(MLP, 0.1, "balanced", redistribute=True)
    assert plain.realized_density < 0.1
    assert red.realized_density == pytest.approx(0.1, rel=1e-9)
    d = red.densities
    assert d["fc3.weight"] == 1.0
    # equal nonzero counts among the uncapped layers
    assert d["fc1.weight"] * 235200 == pytest.approx(d["fc2.weight"] * 30000)


def test_erk_clamp_variant_undershoots():
    clamp = allocate(MLP, 0.1, "erk", erk_variant="clamp")
    assert clamp.realized_density < 0.1 - 1e-3
    assert max(clamp.densities.values()) == 1.0


def test_uniform_and_global(mlp):
    assert set(layer_densities(mlp, 0.3, "uniform").values()) == {0.3}
    g = allocate(mlp, 0.2, "global")
    assert g.realized_density == pytest.approx(0.2, abs=1e-6)
    # global on magnitudes keeps exactly what the one-threshold prune keeps
    masks = prune(mlp, 0.2, scheme="global")
    for name, d in masks.layer_densities().items():
        assert g.densities[name] == pytest.approx(d)


def test_keep_dense_first_last_and_overrides_keep_total(mlp):
    a = allocate(mlp, 0.1, "uniform", keep_dense=["last"])
    assert a.densities["fc3.weight"] == 1.0
    assert a.realized_density == pytest.approx(0.1)
    assert a.densities["fc1.weight"] == a.densities["fc2.weight"] < 0.1
    b = allocate(mlp, 0.95, "erk", keep_dense=["first"], overrides={"fc3.*": 0.5})
    assert b.realized_density == pytest.approx(0.95)
    assert b.densities["fc1.weight"] == 1.0 and b.densities["fc3.weight"] == 0.5
    c = allocate(mlp, 0.1, "global", keep_dense=["fc3.weight"])
    assert c.densities["fc3.weight"] == 1.0 and c.realized_density == pytest.approx(0.1, abs=1e-5)


def test_explicit_scheme(mlp):
    d = layer_densities(mlp, None, "explicit", densities={"fc1.weight": 0.1, "fc[23].weight": 0.5})
    assert d == {"fc1.weight": 0.1, "fc2.weight": 0.5, "fc3.weight": 0.5}
    with pytest.raises(ConfigError, match="fc3.weight"):
        layer_densities(mlp, None, "explicit", densities={"fc1.weight": 0.1, "fc2.weight": 0.5})
    with pytest.raises(ConfigError, match=r"densities\['fc\*'\]"):
        layer_densities(mlp, None, "explicit", densities={"fc*": 1.5})


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(density=0.0, scheme="uniform"), "density"),
        (dict(density=1.5, scheme="erk"), "density"),
        (dict(density=0.1, scheme="nope"), "scheme"),
        (dict(density=0.1, scheme="uniform", keep_dense=["conv9*"]), "keep_dense"),
        (dict(density=0.001, scheme="uniform", keep_dense=["fc2.weight"]), "density"),  # dense layer alone > budget
        (dict(density=0.1, scheme="erk", erk_variant="x"), "erk_variant"),
        (dict(density=0.1, scheme="uniform", bogus=1), "scheme"),
    ],
)
def test_bad_input_names_the_field(mlp, kwargs, field):
    with pytest.raises(ConfigError) as err:
        allocate(mlp, **kwargs)
    assert err.value.field == field


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 64), st.integers(1, 64), st.integers(1, 3)), min_size=1, max_size=6),
    density=st.floats(0.01, 1.0),
    scheme=st.sampled_from(["uniform", "erk", "pyramidal", "balanced-r"]),
)
def test_schemes_meet_the_budget_exactly(sizes, density, scheme):
    shapes = {f"l{i}.weight": (o, c, k, k) for i, (o, c, k) in enumerate(sizes)}
    opts = {"redistribute": True} if scheme == "balanced-r" else {}
    a = allocate(shapes, density, scheme.removesuffix("-r"), **opts)
    assert all(0.0 <= d <= 1.0 + 1e-12 for d in a.densities.values())
    assert a.realized_density == pytest.approx(density, rel=1e-6, abs=1e-9)


def test_scheme_names_cover_public_list():
    from prunezoo.allocation import SCHEMES

    assert set(SCHEME_NAMES) == {"global", "uniform", "erk", "balanced", "pyramidal", "explicit"}
    # the public list is what the code implements: every registered scheme, plus the inline "explicit"
    assert set(SCHEME_NAMES) == set(SCHEMES) | {"explicit"}
    shapes = {"a.weight": (8, 4), "b.weight": (6, 8)}
    scores = {n: torch.arange(math.prod(s), dtype=torch.float32).reshape(s) for n, s in shapes.items()}
    for name in SCHEME_NAMES:  # each name allocates (none is a dead entry)
        opts = {"densities": {"*": 0.5}} if name == "explicit" else {"scores": scores} if name == "global" else {}
        a = allocate(shapes, 0.5, name, **opts)
        assert a.realized_density == pytest.approx(0.5, abs=0.05), name


def test_erk_raw_score_of_a_conv_layer_counts_its_kernel_dims():
    # ERK: p_l = eps * (c_out + c_in + k_h + k_w) / (c_out * c_in * k_h * k_w), eps fixed by the budget.
    # conv (4, 2, 3, 3): raw 12/72 = 1/6, 72 weights; linear (10, 8): raw 18/80 = 0.225, 80 weights.
    # density 0.5: budget 76 = eps * (72/6 + 0.225 * 80) = 30 eps  ->  eps = 76/30.
    shapes = {"conv.weight": (4, 2, 3, 3), "fc.weight": (10, 8)}
    dens = allocate(shapes, 0.5, "erk").densities
    assert dens["conv.weight"] == pytest.approx(76 / 30 / 6, rel=1e-12)
    assert dens["fc.weight"] == pytest.approx(76 / 30 * 0.225, rel=1e-12)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    assert layer_densities(model, 0.5, "erk") == pytest.approx({"0.weight": 76 / 180, "2.weight": 0.57})


@pytest.mark.parametrize("scheme", ["uniform", "erk", "balanced", "pyramidal"])
def test_prune_with_scheme_matches_allocated_counts(mlp, scheme):
    masks = prune(mlp, 0.1, criterion="random", scheme=scheme, seed=3)
    dens = layer_densities(mlp, 0.1, scheme)
    for name, m in masks.items():
        assert int(m.sum()) == int(math.floor(dens[name] * m.numel() + 0.5 + 1e-9))


# --- random ER masks ---------------------------------------------------------------------------


def test_er_masks_follow_layer_densities_and_are_seeded(vgg):
    a = random_er_masks(vgg, 0.1, "erk", seed=0)
    b = random_er_masks(vgg, 0.1, "erk", seed=0)
    c = random_er_masks(vgg, 0.1, "erk", seed=1)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)
    dens = layer_densities(vgg, 0.1, "erk")
    for name, m in a.items():
        n = m.numel()
        sd = math.sqrt(dens[name] * (1 - dens[name]) / n)
        assert abs(m.float().mean().item() - dens[name]) <= 6 * sd + 1e-12
    assert a.density() == pytest.approx(0.1, abs=0.002)


def test_er_exact_counts(mlp):
    m = random_er_masks(mlp, 0.05, "balanced", exact=True, seed=2)
    dens = layer_densities(mlp, 0.05, "balanced")
    for name, mask in m.items():
        assert int(mask.sum()) == round(dens[name] * mask.numel())


def test_flow_preservation_leaves_no_unit_disconnected():
    model = build_model("mlp", num_classes=10, input_shape=(1, 8, 8), hidden=[64, 32])
    plain = random_er_masks(model, 0.01, "uniform", seed=0)
    flow = random_er_masks(model, 0.01, "uniform", seed=0, flow_preservation=True)

    def dead(masks):
        return sum(int((~m.any(1)).sum() + (~m.any(0)).sum()) for m in masks.values())

    assert dead(plain) > 0
    assert dead(flow) == 0
    assert flow.is_subset_of(plain) is False and plain.is_subset_of(flow)


def test_flow_preservation_on_convs_counts_channel_pairs():
    model = build_model("cnn-s", num_classes=10, input_shape=(1, 28, 28))
    flow = random_er_masks(model, 0.02, "uniform", seed=0, flow_preservation=True)
    for m in flow.values():
        pairs = m.reshape(m.shape[0], m.shape[1], -1).any(-1)
        assert pairs.any(1).all() and pairs.any(0).all()
