"""Tests for the models/ package: the LatentModel contract every backbone must honour."""

import pytest
import torch
import torch.nn as nn

from models import ARCHITECTURES, LatentModel, build_model

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
FEATURE_DIMS = {
    "mlp": [256, 128],
    "cnn": [6, 16, 84],
    "resnet18": [64, 128, 256, 512],
    "resnet20": [16, 32, 64],
    "resnet32": [16, 32, 64],
}


def make(arch, shape=(1, 8, 8), latent_dim=10, seed=0, **kw):
    torch.manual_seed(seed)
    c, s, _ = shape
    return build_model(arch, c, s, latent_dim, **kw)


def images(shape, batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, *shape, generator=g)


def test_architectures_listed():
    assert ARCHITECTURES == ("mlp", "cnn", "resnet18", "resnet20", "resnet32")


# -----------------------------------------------------------------------------
# shapes and the forward / forward_features contract

@pytest.mark.parametrize("latent_dim", [10, 2, 256])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_output_shape(arch, shape, latent_dim):
    if arch == "resnet18" and shape == (1, 28, 28):
        pytest.skip("resnet18 is the slow one on CPU; 8x8 and 32x32 cover it")
    model = make(arch, shape, latent_dim)
    assert isinstance(model, LatentModel)
    assert model.latent_dim == latent_dim
    z = model(images(shape, batch=2))
    assert z.shape == (2, latent_dim)
    assert z.dtype == torch.float32
    assert torch.isfinite(z).all()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_features_consistent(arch, shape):
    model = make(arch, shape, latent_dim=7).eval()
    x = images(shape)
    with torch.no_grad():
        feats, z = model.forward_features(x)
        z2 = model(x)
    assert torch.equal(z, z2)
    assert model.feature_dims == FEATURE_DIMS[arch]
    assert isinstance(feats, list) and len(feats) == len(model.feature_dims)
    for f, dim in zip(feats, model.feature_dims):
        assert f.shape[0] == x.shape[0]
        assert f.shape[1] == dim


# -----------------------------------------------------------------------------
# the linear latent mapper is the final op

@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_mapper_is_last_linear(arch):
    model = make(arch, latent_dim=10).eval()
    assert isinstance(model.mapper, nn.Linear)
    assert model.mapper.out_features == 10
    # the mapper is registered last (the head reads top to bottom)
    assert list(model.children())[-1] is model.mapper
    # no activation after it: with random weights some coordinates are negative
    with torch.no_grad():
        z = model(images((1, 8, 8), batch=8))
    assert (z < 0).any()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_nothing_after_mapper(arch):
    """Replace the mapper's output by a marker: z must be exactly that marker."""
    model = make(arch).eval()
    x = images((1, 8, 8))
    marker = torch.randn(x.shape[0], 10) - 5.0
    seen = {}

    def hook(module, inputs, output):
        seen["input"] = inputs[0]
        seen["output"] = output
        return marker

    handle = model.mapper.register_forward_hook(hook)
    with torch.no_grad():
        feats, z = model.forward_features(x)
    handle.remove()
    assert torch.equal(z, marker)
    # and, without the hook, z is mapper(the previous features)
    with torch.no_grad():
        assert torch.equal(model(x), model.mapper(seen["input"]))
        last = feats[-1]
        if last.dim() == 4:  # resnets: global average pool, then the mapper
            last = last.mean(dim=(2, 3))
        torch.testing.assert_close(model.mapper(last), model(x))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_dropout_on_fc_layers(arch):
    model = make(arch, dropout=0.5)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(m.p == 0.5 for m in drops)
    x = images((1, 8, 8), batch=4)
    model.train()
    # dropout sits right before the mapper: its input is the last features with some
    # entries zeroed and the rest scaled by 1 / (1 - p)
    seen = []
    handle = model.mapper.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    torch.manual_seed(3)
    feats, z1 = model.forward_features(x)
    z2 = model(x)
    handle.remove()
    assert not torch.equal(z1, z2)
    last = feats[-1].detach()
    if last.dim() == 4:  # resnets: global average pool before the mapper
        last = last.mean(dim=(2, 3))
    kept = seen[0].detach() != 0
    assert ((last != 0) & ~kept).any()
    torch.testing.assert_close(seen[0].detach()[kept], 2.0 * last[kept])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


# -----------------------------------------------------------------------------
# normalisation inside the model

@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_normalisation_buffers(arch):
    model = make(arch, (3, 8, 8), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)).eval()
    state = model.state_dict()
    assert state["mean"].shape == (1, 3, 1, 1)
    assert state["std"].shape == (1, 3, 1, 1)
    torch.testing.assert_close(state["mean"].flatten(), torch.tensor([0.5, 0.4, 0.3]))
    assert "mean" in dict(model.named_buffers()) and "mean" not in dict(model.named_parameters())

    x = images((3, 8, 8))
    with torch.no_grad():
        z = model(x)
        # same weights with identity normalisation, fed pre-normalised pixels
        plain = make(arch, (3, 8, 8)).eval()
        z_manual = plain((x - model.mean) / model.std)
        torch.testing.assert_close(z, z_manual)
        model.mean.fill_(0.0)
        assert not torch.allclose(model(x), z)


@pytest.mark.parametrize("channels", [1, 3])
def test_length_one_stats_broadcast(channels):
    model = build_model("mlp", channels, 8, 4, mean=(0.5,), std=(0.25,))
    assert model.mean.shape == (1, channels, 1, 1)
    assert torch.all(model.mean == 0.5) and torch.all(model.std == 0.25)


def test_stats_survive_state_dict_roundtrip():
    a = make("cnn", (3, 32, 32), mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    b = make("cnn", (3, 32, 32), seed=5)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.mean, a.mean) and torch.equal(b.std, a.std)


# -----------------------------------------------------------------------------
# architecture details

def test_resnet18_small_image_stem():
    model = make("resnet18", (3, 32, 32))
    stem = model.conv1
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1) and stem.padding == (1, 1)
    assert stem.in_channels == 3 and stem.out_channels == 64
    assert isinstance(model.maxpool, nn.Identity)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.mapper.in_features == 512
    # 32x32 input keeps full resolution through layer1 (no stride-2 stem, no pool)
    with torch.no_grad():
        feats, _ = model.eval().forward_features(images((3, 32, 32), batch=2))
    assert [tuple(f.shape[2:]) for f in feats] == [(32, 32), (16, 16), (8, 8), (4, 4)]


def test_cnn_flatten_size_follows_image_size():
    for size, side in [(8, 2), (28, 7), (32, 8)]:
        assert make("cnn", (1, size, size)).fc1.in_features == 16 * side * side


@pytest.mark.parametrize("arch,depth", [("resnet20", 20), ("resnet32", 32)])
def test_cifar_resnet_depth(arch, depth):
    model = make(arch, (3, 32, 32))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == depth - 1 and len(linears) == 1
    assert len(convs) + len(linears) == depth
    # option A shortcuts carry no parameters; the stages are 16/32/64 wide
    assert {c.out_channels for c in convs} == {16, 32, 64}
    assert model.mapper.in_features == 64
    if depth == 20:
        # 0.27M parameters, as in table 6 of He et al. (10 outputs)
        assert sum(p.numel() for p in model.parameters()) == 269_722


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_gradients_reach_first_layer_and_input(arch):
    model = make(arch, (3, 8, 8))
    x = images((3, 8, 8)).requires_grad_(True)
    model(x).pow(2).sum().backward()
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_same_seed_same_weights(arch):
    a, b, c = make(arch, seed=42), make(arch, seed=42), make(arch, seed=43)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# -----------------------------------------------------------------------------
# argument validation: ValueError naming the field

@pytest.mark.parametrize("arch", ["vgg", "", "ResNet18", None])
def test_unknown_arch(arch):
    with pytest.raises(ValueError, match="model") as info:
        build_model(arch, 1, 8, 10)
    for name in ARCHITECTURES:
        assert name in str(info.value)


@pytest.mark.parametrize("field,kwargs", [
    ("latent_dim", dict(latent_dim=0)),
    ("latent_dim", dict(latent_dim=-3)),
    ("latent_dim", dict(latent_dim=2.5)),
    ("dropout", dict(dropout=1.0)),
    ("dropout", dict(dropout=-0.1)),
    ("dropout", dict(dropout=float("nan"))),
    ("in_channels", dict(in_channels=0)),
    ("in_channels", dict(in_channels=1.5)),
    ("in_channels", dict(in_channels="3")),
    ("image_size", dict(image_size=0)),
    ("mean", dict(mean=(0.1, 0.2))),
    ("mean", dict(mean="abc")),
    ("std", dict(std=(0.0,))),
    ("std", dict(std=(-1.0,))),
])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_bad_arguments(arch, field, kwargs):
    args = dict(in_channels=3, image_size=8, latent_dim=10)
    args.update({k: v for k, v in kwargs.items() if k in args})
    extra = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises(ValueError, match=field):
        build_model(arch, args["in_channels"], args["image_size"], args["latent_dim"], **extra)


def test_cnn_needs_room_for_two_pools():
    with pytest.raises(ValueError, match="image_size"):
        build_model("cnn", 1, 3, 10)


# --- the first convolution's image gradient (models/input_conv.py) ------------------------------
def _conv_pair(cin, k, p, bias=True):
    from models.input_conv import InputConv2d

    torch.manual_seed(0)
    ref = nn.Conv2d(cin, 5, k, padding=p, bias=bias).double()
    fast = InputConv2d(cin, 5, k, padding=p, bias=bias).double()
    fast.load_state_dict(ref.state_dict())  # same parameter names and shapes as nn.Conv2d
    return ref, fast


@pytest.mark.parametrize("k,p,bias", [(5, 2, True), (3, 1, False), (3, 0, True), (5, 4, True)])
def test_input_conv_gradients_equal_nn_conv2d(k, p, bias):
    ref, fast = _conv_pair(1, k, p, bias)
    x = torch.rand(3, 1, 9, 9, dtype=torch.double, requires_grad=True)
    assert torch.allclose(fast(x), ref(x), atol=1e-12)
    g = torch.randn_like(ref(x))
    params = lambda m: [x, m.weight] + ([m.bias] if bias else [])  # noqa: E731
    for a, b in zip(torch.autograd.grad(ref(x), params(ref), g), torch.autograd.grad(fast(x), params(fast), g)):
        assert torch.allclose(a, b, atol=1e-12)
    # the image gradient alone (what attacks ask for), and the parameters' alone (x requiring grad)
    assert torch.allclose(torch.autograd.grad(fast(x), x, g)[0], torch.autograd.grad(ref(x), x, g)[0], atol=1e-12)
    assert torch.allclose(torch.autograd.grad(fast(x), fast.weight, g)[0],
                          torch.autograd.grad(ref(x), ref.weight, g)[0], atol=1e-12)
    assert torch.autograd.gradcheck(fast, (x,))


def test_input_conv_takes_its_own_path_only_for_one_channel_images_needing_a_gradient():
    _, one = _conv_pair(1, 3, 1)
    _, rgb = _conv_pair(3, 3, 1)
    x1 = torch.rand(2, 1, 6, 6, dtype=torch.double, requires_grad=True)
    x3 = torch.rand(2, 3, 6, 6, dtype=torch.double, requires_grad=True)
    assert "ImageGradient" in type(one(x1).grad_fn).__name__
    assert "Convolution" in type(one(x1.detach()).grad_fn).__name__  # training: nn.Conv2d's own path
    assert "Convolution" in type(rgb(x3).grad_fn).__name__


def test_input_conv_refuses_what_its_backward_does_not_cover():
    from models.input_conv import InputConv2d

    for kwargs in (dict(stride=2), dict(dilation=2), dict(padding=3), dict(padding="same"), dict(padding_mode="reflect")):
        with pytest.raises(ValueError, match="InputConv2d needs stride 1"):
            InputConv2d(1, 4, 3, **kwargs)
