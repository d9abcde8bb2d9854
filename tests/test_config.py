import json

import pytest

from unetseg import ConfigError, UNetConfig
from unetseg.config import FORMAT_VERSION


def test_defaults_are_valid_and_round_trip_through_json() -> None:
    config = UNetConfig(
        in_channels=1,
        num_classes=3,
        class_names=["bg", "cell", "edge"],
        mask_values=[0, 128, 255],
        class_colors=[[0, 0, 0], [255, 0, 0], [0, 255, 0]],
        image_mean=[0.5],
        image_std=[0.2],
        ignore_index=255,
        metrics={"mean_iou": 0.8},
    )
    text = json.dumps(config.to_dict())
    again = UNetConfig.from_dict(json.loads(text))
    assert again == config
    assert again.class_names == ("bg", "cell", "edge")  # lists normalised to tuples
    assert again.class_colors == ((0, 0, 0), (255, 0, 0), (0, 255, 0))
    assert config.to_dict()["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("bad", ["3", True, 2.5, 0, -1, None])
def test_integer_fields_reject_wrong_types_and_ranges(bad: object) -> None:
    with pytest.raises(ConfigError, match="in_channels"):
        UNetConfig(in_channels=bad)  # type: ignore[arg-type]


def test_absurd_width_fails_before_allocating() -> None:
    with pytest.raises(ConfigError, match="base_channels"):
        UNetConfig(base_channels=10**9)
    with pytest.raises(ConfigError, match="parameters"):
        UNetConfig(base_channels=1024, depth=6)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("norm", "layer", "norm must be one of"),
        ("upsample", "nearest", "upsample must be one of"),
        ("activation", "tanh", "activation must be one of"),
        ("dropout", 1.0, "dropout"),
        ("dropout", True, "dropout"),
        ("class_names", ["a"], "class_names has 1 entries"),
        ("class_names", ["a", "a"], "unique"),
        ("mask_values", [0, "255"], "mask_values"),
        ("class_colors", [[0, 0, 0], [0, 0]], r"\[R, G, B\]"),
        ("class_colors", [[0, 0, 0], [0, 0, 256]], "colour"),
        ("image_mean", [0.5, 0.5], "image_mean has 2 entries"),
        ("ignore_index", 1, "is a real class"),
        ("mask_encoding", "jpeg", "mask_encoding"),
        ("metrics", {"miou": "high"}, "metrics"),
        ("metrics", {"miou": float("nan")}, "finite"),  # config.json would not be JSON
        ("metrics", {"miou": 10**400}, "finite"),  # beyond any float: not OverflowError
        ("ignore_colors", [[0, 0, 0]], "needs an ignore_index"),
        ("tta_flips", ["diagonal"], "tta_flips"),
        ("tta_flips", "horizontal", "tta_flips must be a list"),
    ],
)
def test_metadata_validation(field: str, value: object, fragment: str) -> None:
    kwargs = {"in_channels": 3, "num_classes": 2, field: value}
    if field == "image_mean":
        kwargs["image_std"] = [0.2, 0.2]
        kwargs["in_channels"] = 3
    with pytest.raises(ConfigError, match=fragment):
        UNetConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "fragment"), [([[0, 0]], r"\[R, G, B\]"), ([[0, -1, 0]], "colour")]
)
def test_ignore_colors_are_checked_like_class_colors(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        UNetConfig(ignore_index=255, ignore_colors=value)  # type: ignore[arg-type]
    config = UNetConfig(ignore_index=255, ignore_colors=[[0, 0, 0], [9, 9, 9]])  # type: ignore[list-item]
    assert config.ignore_colors == ((0, 0, 0), (9, 9, 9))
    assert UNetConfig.from_dict(config.to_dict()) == config


def test_mean_without_std_is_refused() -> None:
    with pytest.raises(ConfigError, match="together"):
        UNetConfig(in_channels=1, image_mean=[0.5])


def test_group_norm_needs_divisible_width() -> None:
    with pytest.raises(ConfigError, match="multiple of 8"):
        UNetConfig(norm="group", base_channels=12)


def test_from_dict_refuses_unknown_keys_and_newer_versions() -> None:
    data = UNetConfig().to_dict()
    with pytest.raises(ConfigError, match="unknown key"):
        UNetConfig.from_dict({**data, "colour_space": "rgb"}, source="x/config.json")
    with pytest.raises(ConfigError, match="newer"):
        UNetConfig.from_dict({**data, "format_version": FORMAT_VERSION + 1})
    with pytest.raises(ConfigError, match=r"x/config.json: in_channels"):
        UNetConfig.from_dict({**data, "in_channels": "3"}, source="x/config.json")
    with pytest.raises(ConfigError, match="JSON object"):
        UNetConfig.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \[1, 'colour_space'\]"):
        UNetConfig.from_dict({**data, 1: 2, "colour_space": "rgb"})


def test_replace_validates_and_refuses_unknown_fields() -> None:
    config = UNetConfig()
    assert config.replace(num_classes=5).num_classes == 5
    with pytest.raises(ConfigError):
        config.replace(num_classes=0)
    with pytest.raises(ConfigError, match="unknown"):
        config.replace(classes=5)


def test_architecture_lists_layer_fields_only() -> None:
    arch = UNetConfig(class_names=["a", "b"]).architecture()
    assert "class_names" not in arch
    assert set(arch) >= {"in_channels", "num_classes", "base_channels", "depth"}


def test_config_is_hashable_and_frozen() -> None:
    config = UNetConfig(metrics={"mean_iou": 0.5})
    hash(config)
    with pytest.raises(AttributeError):
        config.depth = 3  # type: ignore[misc]
