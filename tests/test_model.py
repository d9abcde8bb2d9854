import pytest
import torch

from unetseg import ConfigError, InputError, UNet, UNetConfig
from unetseg.config import estimate_parameters


def tiny(**kwargs: object) -> UNet:
    defaults: dict[str, object] = {"base_channels": 8, "depth": 3}
    defaults.update(kwargs)
    return UNet(**defaults)  # type: ignore[arg-type]


@pytest.mark.parametrize("in_channels", [1, 3, 4])
@pytest.mark.parametrize("num_classes", [2, 11])
@pytest.mark.parametrize("size", [(1, 1), (97, 131), (33, 257), (64, 64)])
def test_any_size_gives_logits_at_input_size(
    in_channels: int, num_classes: int, size: tuple[int, int]
) -> None:
    model = tiny(in_channels=in_channels, num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, *size))
    assert out.shape == (2, num_classes, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "arch",
    [
        {"norm": "batch", "upsample": "transpose"},
        {"norm": "group", "upsample": "bilinear", "activation": "gelu"},
        {"norm": "instance", "activation": "leaky_relu", "dropout": 0.2},
        {"norm": "none", "activation": "silu"},
        {"block": "residual"},
        {"block": "residual", "norm": "group", "upsample": "bilinear"},
        {"depth": 0},
        {"depth": 5},
    ],
)
def test_forward_backward_gives_finite_gradients(arch: dict[str, object]) -> None:
    model = tiny(in_channels=3, num_classes=4, **arch)
    x = torch.randn(2, 3, 45, 70)
    target = torch.randint(0, 4, (2, 45, 70))
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads if g is not None)


def test_classic_configuration_matches_paper_parameter_count() -> None:
    # The U-Net paper's layout with padded convs and batch norm: 31.0M for 3 in / 2 out.
    model = UNet(3, 2, base_channels=64, depth=4, upsample="transpose", norm="batch")
    count = sum(p.numel() for p in model.parameters())
    assert round(count / 1e6, 1) == 31.0
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 * 9 + 1  # two 3x3 convs at each of 9 levels, then the 1x1 head
    widths = sorted({m.out_channels for m in convs if m.kernel_size == (3, 3)})
    assert widths == [64, 128, 256, 512, 1024]


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_parameter_estimate_tracks_real_count(upsample: str) -> None:
    model = UNet(3, 5, base_channels=16, depth=4, upsample=upsample, norm="none")
    count = sum(p.numel() for p in model.parameters())
    estimate = estimate_parameters(3, 5, 16, 4, upsample)
    assert abs(count - estimate) / count < 0.01


def test_same_seed_same_weights_and_different_seed_differs() -> None:
    torch.manual_seed(0)
    a = tiny().state_dict()
    torch.manual_seed(0)
    b = tiny().state_dict()
    torch.manual_seed(1)
    c = tiny().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_built_from_config_or_arguments_alike() -> None:
    config = UNetConfig(in_channels=1, num_classes=3, base_channels=8, depth=2)
    assert UNet(config).config == config
    assert UNet(1, 3, base_channels=8, depth=2).config == config
    with pytest.raises(ConfigError, match="either"):
        UNet(config, num_classes=4)
    with pytest.raises(ConfigError, match="valid fields"):
        UNet(1, 2, width=8)
    with pytest.raises(ConfigError, match="base_channels"):
        UNet(1, 2, base_channels=10**9)
    with pytest.raises(ConfigError, match="in_channels given twice"):
        UNet(4, 2, in_channels=1, base_channels=4)
    assert UNet(num_classes=2, base_channels=4).in_channels == 3
    assert UNet(in_channels=1, base_channels=4).in_channels == 1


def test_wrong_input_shape_is_a_clear_error() -> None:
    model = tiny(in_channels=3)
    with pytest.raises(InputError, match=r"\(N, 3, H, W\).*\(1, 5, 8, 8\)"):
        model(torch.randn(1, 5, 8, 8))
    with pytest.raises(InputError):
        model(torch.randn(3, 8, 8))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.randn(1, 3, 8, 8, dtype=torch.float64), "float32 but the input is torch.float64"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "input is torch.uint8"),
        (torch.randn(1, 3, 0, 8), "H, W >= 1"),
        (torch.randn(1, 3, 8, 8).numpy(), "torch.Tensor, got ndarray"),
    ],
)
def test_wrong_input_type_is_a_clear_error(x: object, match: str) -> None:
    # torch's own messages ("expected scalar type Double but found Float") name no fix.
    with pytest.raises(InputError, match=match):
        tiny(in_channels=3).eval()(x)


def test_autocast_takes_other_float_inputs_but_not_float64() -> None:
    model = tiny(in_channels=3).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(1, 3, 9, 9).half()).shape == (1, 2, 9, 9)
        with pytest.raises(InputError, match="float64"):  # autocast never casts float64
            model(torch.randn(1, 3, 9, 9, dtype=torch.float64))


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_training_on_a_1x1_bottleneck_says_what_to_do(norm: str) -> None:
    model = tiny(in_channels=3, norm=norm).train()  # depth 3: 8x8 shrinks to 1x1
    with pytest.raises(InputError, match=r"1x1 at the bottleneck.*a side over 8 pixels"):
        model(torch.randn(1, 3, 8, 8))
    assert model(torch.randn(1, 3, 8, 9)).shape == (1, 2, 8, 9)
    if norm == "batch":
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 2, 8, 8)


def test_channels_last_gives_same_logits() -> None:
    model = tiny(in_channels=3).eval()
    x = torch.randn(2, 3, 40, 52)
    with torch.no_grad():
        expected = model(x)
        got = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_torch_compile_eager_backend() -> None:
    model = tiny(in_channels=1).eval()
    compiled = torch.compile(model, backend="eager")
    x = torch.randn(1, 1, 37, 50)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.trace.*is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # shape checks become constants
def test_jit_trace() -> None:
    model = tiny(in_channels=1).eval()
    x = torch.randn(1, 1, 48, 48)
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x), model(x))


def test_torch_export_static_shape_odd_size() -> None:
    model = tiny(in_channels=1).eval()
    x = torch.randn(1, 1, 37, 61)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


def test_torch_export_dynamic_over_multiples_of_the_size_multiple() -> None:
    # One exported graph serves every height and width that is a multiple of 2**depth
    # (>= 2 multiples); segment() pads to such sizes before calling an exported model.
    model = tiny(in_channels=1).eval()
    multiple = model.config.size_multiple
    rows = torch.export.Dim("rows", min=2, max=512)
    cols = torch.export.Dim("cols", min=2, max=512)
    exported = torch.export.export(
        model,
        (torch.randn(1, 1, 5 * multiple, 7 * multiple),),
        dynamic_shapes={"x": {2: multiple * rows, 3: multiple * cols}},
    )
    for rows_, cols_ in [(2, 2), (3, 11)]:
        x = torch.randn(1, 1, rows_ * multiple, cols_ * multiple)
        with torch.no_grad():
            torch.testing.assert_close(exported.module()(x), model(x))


def test_residual_blocks_add_shortcuts_only_where_the_width_changes() -> None:
    plain = UNet(3, 2, base_channels=8, depth=3)
    residual = UNet(3, 2, base_channels=8, depth=3, block="residual")
    extra = sum(p.numel() for p in residual.parameters()) - sum(
        p.numel() for p in plain.parameters()
    )
    assert 0 < extra < sum(p.numel() for p in plain.parameters()) / 9
    with pytest.raises(ConfigError, match="block must be one of"):
        UNet(3, 2, block="dense")


def test_configs_saved_before_the_block_field_still_load() -> None:
    data = UNetConfig().to_dict()
    del data["block"]
    assert UNetConfig.from_dict(data).block == "plain"
