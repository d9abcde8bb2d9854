"""The ``README.md`` model card written beside every checkpoint.

The card is generated from the ``UNetConfig`` alone (plus what only the user knows: licence,
data, tags), so it can never disagree with ``config.json``. Its YAML front matter is what the
Hugging Face Hub indexes (``library_name``, ``pipeline_tag``, ``tags``, ``license``,
``datasets``); the body shows the classes, preprocessing, metrics and how to use the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from .config import UNetConfig
from .errors import ConfigError
from .masks import color_hex

__all__ = ["DEFAULT_TAGS", "render_model_card"]

DEFAULT_TAGS = ("unetseg", "image-segmentation", "semantic-segmentation", "u-net", "pytorch")


_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*")


def _yaml_str(value: str) -> str:
    # Anything beyond a simple id is written as a JSON string (ASCII, escaped), which is a
    # valid YAML double-quoted scalar: no YAML syntax in a tag can break the front matter.
    if _PLAIN.fullmatch(value) and value.lower() not in {
        "true",
        "false",
        "null",
        "yes",
        "no",
        "on",
        "off",
        "y",
        "n",
    }:
        return value
    # JSON would write a character beyond U+FFFF (an emoji) as a surrogate pair, which YAML
    # parsers read as two invalid characters (the Hub's cannot encode them); YAML's own \U
    # escape keeps it one character.
    escaped = (f"\\U{ord(c):08x}" if ord(c) > 0xFFFF else json.dumps(c)[1:-1] for c in value)
    return '"' + "".join(escaped) + '"'


# Markdown and HTML syntax: "|" would start a new column, "<road>" would vanish as an HTML
# tag, "_background_" turn italic, "&lt;" become "<". A backslash makes each one literal.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>&|~])")


def _cell(value: object) -> str:
    # Table cells and list items: one line, shown exactly as written.
    text = " ".join(str(value).split())
    return _MARKDOWN.sub(r"\\\1", text) or " "


def _check_strings(what: str, values: Sequence[object]) -> None:
    # A bare string is a Sequence[str] too: tags="em" would become the tags "e" and "m".
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        hint = f"; pass {what}=[{values!r}] for one" if isinstance(values, str) else ""
        raise ConfigError(f"{what} must be a list of strings, got {values!r}{hint}")


def _front_matter(license: str | None, datasets: Sequence[str], tags: Sequence[str]) -> list[str]:
    lines = ["---", "library_name: unetseg", "pipeline_tag: image-segmentation"]
    if license:
        lines.append(f"license: {_yaml_str(license)}")
    all_tags = list(dict.fromkeys([*DEFAULT_TAGS, *tags]))  # dedupe, keep order
    lines.append("tags:")
    lines.extend(f"- {_yaml_str(tag)}" for tag in all_tags)
    if datasets:
        lines.append("datasets:")
        lines.extend(f"- {_yaml_str(name)}" for name in datasets)
    lines.append("---")
    return lines


def _classes_table(config: UNetConfig) -> list[str]:
    lines = ["## Classes", ""]
    header = ["index", "name"]
    if config.mask_values is not None:
        header.append(f"value in the masks ({config.mask_encoding or 'original'})")
    if config.class_colors is not None:
        header.append("colour (RGB)")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for k in range(config.num_classes):
        row = [str(k), _cell(config.class_names[k]) if config.class_names else f"class {k}"]
        if config.mask_values is not None:
            row.append(str(config.mask_values[k]))
        if config.class_colors is not None:
            color = config.class_colors[k]
            row.append(f"{color_hex(color)} {color}")
        lines.append("| " + " | ".join(row) + " |")
    if config.ignore_index is not None:
        void = ""
        if config.ignore_colors:
            void = f" (mask colours {', '.join(map(color_hex, config.ignore_colors))})"
        lines += ["", f"Pixels labelled `{config.ignore_index}`{void} were ignored in training."]
    return [*lines, ""]


def _preprocessing(config: UNetConfig) -> list[str]:
    lines = [
        "## Input",
        "",
        f"- {config.in_channels} channel(s); any height and width (padded internally to a "
        f"multiple of {config.size_multiple}).",
        "- Pixel values scaled to [0, 1] by their dtype's range (8-bit / 255, 16-bit / 65535).",
    ]
    if config.image_mean is not None and config.image_std is not None:
        mean = ", ".join(f"{v:.4g}" for v in config.image_mean)
        std = ", ".join(f"{v:.4g}" for v in config.image_std)
        lines.append(f"- Then normalised per channel: mean ({mean}), std ({std}).")
    lines.append(
        "- `unetseg.segment()` applies all of this from `config.json`; do not preprocess by hand."
    )
    return [*lines, ""]


def render_model_card(
    config: UNetConfig,
    *,
    repo_id: str | None = None,
    license: str | None = None,
    datasets: Sequence[str] = (),
    tags: Sequence[str] = (),
) -> str:
    """Markdown model card with Hub front matter for a checkpoint of ``config``.

    Args:
        config: the model's config (classes, preprocessing, metrics are read from it).
        repo_id: Hub id used in the usage snippet (a local path placeholder if ``None``).
        license: SPDX-style licence id for the weights (``"mit"``, ``"cc-by-4.0"``), if known.
        datasets: the training data (Hub dataset ids or names), if known.
        tags: extra Hub tags, added to ``DEFAULT_TAGS``.

    Returns:
        The text of ``README.md``.

    Raises:
        ConfigError: ``license`` is not a string, or ``datasets`` or ``tags`` is not a list
            of strings (a bare string, say).
    """
    if license is not None and not isinstance(license, str):
        raise ConfigError(f"license must be a string such as 'mit', got {license!r}")
    _check_strings("datasets", datasets)
    _check_strings("tags", tags)
    c = config
    title = repo_id.rsplit("/", 1)[-1] if repo_id else "U-Net segmentation model"
    source = repo_id or "path/to/this/folder"
    lines = [
        *_front_matter(license, datasets, tags),
        "",
        f"# {_cell(title)}",
        "",
        f"A U-Net for semantic segmentation into {c.num_classes} classes, saved with "
        "[unetseg](https://pypi.org/project/unetseg/): `config.json` describes the network "
        "and its data, `model.safetensors` holds the weights (no pickle).",
        "",
        f"Architecture: depth {c.depth}, base width {c.base_channels}, {c.norm} norm, "
        f"{c.activation}, {c.upsample} upsampling, dropout {c.dropout:g}.",
        "",
        *_classes_table(c),
        *_preprocessing(c),
    ]
    if c.metrics:
        lines += ["## Validation metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {_cell(name)} | {value:.4f} |" for name, value in c.metrics.items()]
        lines.append("")
    if datasets:
        lines += ["## Training data", ""]
        lines += [f"- {_cell(name)}" for name in datasets]
        lines.append("")
    lines += [
        "## Usage",
        "",
        "```python",
        "from unetseg import UNet, segment",
        "",
        f"model = UNet.from_pretrained({json.dumps(source)})",
        'mask = segment(model, "image.png")',
        "```",
        "",
    ]
    return "\n".join(lines)
