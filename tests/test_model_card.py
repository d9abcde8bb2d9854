"""The README.md model card: Hub front matter that parses, and the config's facts in the body."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from unetseg import ConfigError, UNet, UNetConfig
from unetseg.model_card import DEFAULT_TAGS, render_model_card

CONFIG = UNetConfig(
    in_channels=3,
    num_classes=3,
    base_channels=4,
    depth=2,
    class_names=("sky", "road | lane", "car: parked"),
    mask_encoding="color",
    mask_values=(0, 1, 2),
    class_colors=((0, 0, 255), (128, 64, 128), (255, 0, 0)),
    image_mean=(0.485, 0.456, 0.406),
    image_std=(0.229, 0.224, 0.225),
    ignore_index=255,
    ignore_colors=((0, 0, 0),),
    metrics={"mean_iou": 0.8123456, "pixel_accuracy": 0.95},
)


def front_matter(card: str) -> dict[str, object]:
    assert card.startswith("---\n")
    data = yaml.safe_load(card.split("---\n")[1])
    assert isinstance(data, dict)
    return data


def test_front_matter_is_what_the_hub_indexes() -> None:
    card = render_model_card(CONFIG, repo_id="org/cars", license="cc-by-4.0", datasets=["org/city"])
    meta = front_matter(card)
    assert meta["library_name"] == "unetseg"
    assert meta["pipeline_tag"] == "image-segmentation"
    assert meta["license"] == "cc-by-4.0"
    assert meta["datasets"] == ["org/city"]
    assert meta["tags"] == list(DEFAULT_TAGS)
    hub_meta = ModelCard(card).data.to_dict()  # huggingface_hub's own parser agrees
    assert hub_meta["library_name"] == "unetseg" and hub_meta["license"] == "cc-by-4.0"


def test_unknown_licence_and_data_are_left_out() -> None:
    meta = front_matter(render_model_card(CONFIG))
    assert "license" not in meta and "datasets" not in meta
    assert "## Training data" not in render_model_card(CONFIG)


def test_hostile_tags_cannot_break_the_yaml() -> None:
    tags = ["a: b", "- c", "#d", 'e"f', "yes", "1", "x\ny", "ünï"]
    meta = front_matter(render_model_card(CONFIG, tags=[*tags, "unetseg"]))
    assert meta["tags"] == [*DEFAULT_TAGS, *tags]  # strings, deduplicated, in order


def test_classes_table_has_names_values_and_colours() -> None:
    card = render_model_card(CONFIG)
    assert "| index | name | value in the masks (color) | colour (RGB) |" in card
    assert "| 0 | sky | 0 | #0000ff (0, 0, 255) |" in card
    assert "| 1 | road \\| lane | 1 | #804080 (128, 64, 128) |" in card  # "|" escaped
    assert "| 2 | car: parked | 2 | #ff0000 (255, 0, 0) |" in card
    assert "labelled `255` (mask colours #000000) were ignored" in card


def test_metrics_preprocessing_and_usage() -> None:
    card = render_model_card(CONFIG, repo_id="org/cars", datasets=["Cityscapes subset"])
    assert "| mean\\_iou | 0.8123 |" in card and "| pixel\\_accuracy | 0.9500 |" in card
    assert "mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)" in card
    assert "- 3 channel(s)" in card and "multiple of 4" in card
    assert "## Training data\n\n- Cityscapes subset" in card
    assert 'model = UNet.from_pretrained("org/cars")' in card
    assert card.startswith("---\n") and "\n# cars\n" in card


def test_bare_config_gets_a_plain_card() -> None:
    card = render_model_card(UNetConfig(num_classes=2, base_channels=4, depth=2))
    assert "| 0 | class 0 |" in card and "## Validation metrics" not in card
    assert "normalised" not in card and "ignored" not in card
    assert "path/to/this/folder" in card


def test_tags_datasets_and_licence_must_be_strings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tags=\['em'\]"):
        render_model_card(CONFIG, tags="em")  # not the tags "e" and "m"
    with pytest.raises(ConfigError, match=r"datasets=\['isbi'\]"):
        UNet(CONFIG).save_pretrained(tmp_path / "x", datasets="isbi")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match=r"tags"):
        render_model_card(CONFIG, tags=["em", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"license"):
        render_model_card(CONFIG, license=1)  # type: ignore[arg-type]


def test_characters_beyond_the_bmp_stay_whole_in_the_yaml() -> None:
    card = render_model_card(CONFIG, license="🙂", datasets=["🧫 cells"], tags=["a😀b"])
    meta = front_matter(card)
    assert meta["license"] == "🙂" and meta["datasets"] == ["🧫 cells"]
    assert meta["tags"] == [*DEFAULT_TAGS, "a😀b"]
    assert ModelCard(card).data.to_dict()["tags"][-1] == "a😀b"  # the Hub's parser too


def test_markdown_and_html_in_names_are_shown_literally() -> None:
    names = ("_background_", "<void>", "a&lt;b", "*car*", "x`y", "[z](u)")
    config = UNetConfig(
        num_classes=6, base_channels=4, depth=2, class_names=names, metrics={"iou/<void>": 0.5}
    )
    card = render_model_card(config, datasets=["<data>"])
    assert "| 0 | \\_background\\_ |" in card  # not italic
    assert "| 1 | \\<void\\> |" in card  # not an HTML tag the renderer drops
    assert "| 2 | a\\&lt;b |" in card  # not the entity "<"
    assert "| 3 | \\*car\\* |" in card and "| 4 | x\\`y |" in card
    assert "| 5 | \\[z\\](u) |" in card  # not a link
    assert "| iou/\\<void\\> | 0.5000 |" in card and "- \\<data\\>" in card
