"""``UNetConfig``: the architecture of a U-Net plus what makes a checkpoint self-describing.

The config is a frozen dataclass of JSON-native values. It is written to ``config.json``
beside the weights, so everything ``segment()`` needs to preprocess an image and to write
masks back in the user's own encoding lives here, not in code.

Validation happens in ``__post_init__``: types are checked explicitly (``True`` is not an
``int``, ``"3"`` is not an ``int``), and ranges are checked before any tensor is allocated,
so ``UNetConfig(base_channels=10**9)`` fails at once instead of exhausting memory.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURE_FIELDS",
    "BLOCKS",
    "FORMAT_VERSION",
    "MASK_ENCODINGS",
    "NORMS",
    "TTA_FLIPS",
    "UPSAMPLINGS",
    "WEIGHTS_DIGEST_KEY",
    "UNetConfig",
]

#: Version of the ``config.json`` layout. Bump when a field changes meaning.
FORMAT_VERSION = 1
#: Key of the SHA-256 of the weights' tensor data that ``save_pretrained`` records in both
#: ``config.json`` and ``model.safetensors``' metadata, tying the two files to one save.
#: Like ``format_version`` it describes the file, not the model: not a config field.
WEIGHTS_DIGEST_KEY = "weights_sha256"

NORMS = ("batch", "group", "instance", "none")
UPSAMPLINGS = ("transpose", "bilinear")
BLOCKS = ("plain", "residual")
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu")
#: How the training masks encoded classes (see ``SegmentationDataset``):
#: ``index`` pixel value = class; ``binary`` two values (0/255, 0/1) -> 0/1;
#: ``grey`` a few grey levels -> consecutive classes; ``palette`` P-mode indices;
#: ``color`` one RGB colour per class.
MASK_ENCODINGS = ("index", "binary", "grey", "palette", "color")
#: Flips ``segment(tta=True)`` can average over.
TTA_FLIPS = ("horizontal", "vertical")
#: Fields that decide the layers, and so the names and shapes of the weights.
ARCHITECTURE_FIELDS = (
    "in_channels",
    "num_classes",
    "base_channels",
    "depth",
    "norm",
    "upsample",
    "activation",
    "dropout",
    "block",
)

# Far above any sensible U-Net, far below what would exhaust a machine's memory.
MAX_PARAMETERS = 500_000_000
MAX_CLASSES = 65_536
MAX_CHANNELS_IN = 64


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{name} must be an integer in [{low}, {high}], got {value!r} ({type(value).__name__})"
        )
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def _check_float(name: str, value: object, low: float, high: float, *, high_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    ok = low <= value < high if high_open else low <= value <= high
    if not ok or not math.isfinite(value):
        bracket = ")" if high_open else "]"
        raise ConfigError(f"{name} must be in [{low}, {high}{bracket}, got {value}")
    return float(value)


def _check_length(name: str, values: tuple[Any, ...], expected: int, what: str) -> None:
    if len(values) != expected:
        raise ConfigError(f"{name} has {len(values)} entries but the model has {expected} {what}")


def _as_tuple(name: str, value: object) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ConfigError(f"{name} must be a list, got {value!r}")
    return tuple(value)


def _check_colors(name: str, value: object) -> tuple[tuple[int, int, int], ...]:
    colors = tuple(_as_tuple(f"each of {name}", c) for c in _as_tuple(name, value))
    for color in colors:
        if len(color) != 3:
            raise ConfigError(f"each of {name} must be [R, G, B], got {color!r}")
        for channel in color:
            _check_int("each colour component", channel, 0, 255)
    return colors  # type: ignore[return-value,unused-ignore]  # three ints each, checked above


def estimate_parameters(
    in_channels: int, num_classes: int, base_channels: int, depth: int, upsample: str
) -> int:
    """Count the weights of the network a config describes, without building it.

    Used to refuse absurd sizes before allocating; exact for plain blocks in ``layers.py``
    up to normalisation parameters, which are negligible (residual blocks add 1x1
    shortcuts, under a ninth more).
    """
    widths = [base_channels * 2**level for level in range(depth + 1)]
    total = 9 * in_channels * widths[0] + 9 * widths[0] ** 2
    for level in range(1, depth + 1):  # encoder: two 3x3 convs per level
        total += 9 * widths[level - 1] * widths[level] + 9 * widths[level] ** 2
    for level in range(depth, 0, -1):  # decoder: upsample, then two 3x3 convs
        wide, narrow = widths[level], widths[level - 1]
        total += (4 if upsample == "transpose" else 1) * wide * narrow + narrow
        total += 9 * wide * narrow + 9 * narrow**2
    return int(total + widths[0] * num_classes + num_classes)


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to build a ``UNet`` and to use it on new images.

    Architecture fields decide the layers; the fields after them describe the data the
    model was trained on and are filled in by ``SegmentationDataset`` and ``fit()``.
    """

    # --- architecture ---
    in_channels: int = 3  # image channels the first conv takes (1 grey, 3 RGB, 4 RGBA, ...)
    num_classes: int = 2  # output channels; binary tasks use 2 with softmax/cross-entropy
    base_channels: int = 16  # width of the first level; doubles at every level down (16: ~4x
    # cheaper than 32 per step, and on a CPU budget more steps beat more width; see fit())
    depth: int = 4  # number of 2x downsamplings; inputs are padded to a multiple of 2**depth
    norm: str = "batch"  # normalisation after each conv: batch | group | instance | none
    upsample: str = "transpose"  # decoder upsampling: transpose (2x2 transposed conv) | bilinear
    activation: str = "relu"  # relu | leaky_relu | gelu | silu
    dropout: float = 0.0  # channel dropout at the bottleneck, in [0, 1)
    block: str = "plain"  # plain (the paper's two convs) | residual (plus a shortcut)

    # --- what the data looked like (filled in from the dataset by fit()) ---
    class_names: tuple[str, ...] | None = None  # one name per class
    mask_encoding: str | None = None  # how training masks stored classes, see MASK_ENCODINGS
    mask_values: tuple[int, ...] | None = None  # original mask value of each class, e.g. (0, 255)
    class_colors: tuple[tuple[int, int, int], ...] | None = None  # RGB per class for colour masks
    image_mean: tuple[float, ...] | None = None  # per-channel mean of [0, 1]-scaled images
    image_std: tuple[float, ...] | None = None  # per-channel std of [0, 1]-scaled images
    ignore_index: int | None = None  # label value that losses and metrics skip
    # Colours of colour masks that mean ignore_index (void), so a test set drawn the same
    # way decodes with like=model.
    ignore_colors: tuple[tuple[int, int, int], ...] | None = None
    # Flips the training augmentation applied, so segment(tta=True) averages over only
    # those: a model trained upright has never seen an upside-down street. None: horizontal.
    tta_flips: tuple[str, ...] | None = None
    metrics: Mapping[str, float] | None = field(default=None, hash=False)  # validation scores

    def __post_init__(self) -> None:
        _check_int("in_channels", self.in_channels, 1, MAX_CHANNELS_IN)
        _check_int("num_classes", self.num_classes, 1, MAX_CLASSES)
        _check_int("base_channels", self.base_channels, 1, 4096)
        _check_int("depth", self.depth, 0, 8)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("upsample", self.upsample, UPSAMPLINGS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_float("dropout", self.dropout, 0.0, 1.0, high_open=True)
        _check_choice("block", self.block, BLOCKS)
        if self.norm == "group" and self.base_channels % 8:
            raise ConfigError(
                f"norm='group' uses 8 groups, so base_channels must be a multiple of 8; "
                f"got {self.base_channels}"
            )
        params = estimate_parameters(
            self.in_channels, self.num_classes, self.base_channels, self.depth, self.upsample
        )
        if params > MAX_PARAMETERS:
            raise ConfigError(
                f"base_channels={self.base_channels} with depth={self.depth} gives about "
                f"{params / 1e6:,.0f}M parameters (limit {MAX_PARAMETERS / 1e6:,.0f}M); "
                "lower base_channels or depth"
            )
        self._validate_metadata()

    def _validate_metadata(self) -> None:
        n = self.num_classes
        set_ = object.__setattr__  # frozen: normalise lists to tuples in place
        if self.class_names is not None:
            names = _as_tuple("class_names", self.class_names)
            _check_length("class_names", names, n, "classes")
            if not all(isinstance(name, str) and name for name in names):
                raise ConfigError(f"class_names must be non-empty strings, got {names!r}")
            if len(set(names)) != len(names):
                raise ConfigError(f"class_names must be unique, got {names!r}")
            set_(self, "class_names", names)
        if self.mask_encoding is not None:
            _check_choice("mask_encoding", self.mask_encoding, MASK_ENCODINGS)
        if self.mask_values is not None:
            values = _as_tuple("mask_values", self.mask_values)
            _check_length("mask_values", values, n, "classes")
            for value in values:
                _check_int("each of mask_values", value, 0, 2**32 - 1)
            if len(set(values)) != len(values):
                raise ConfigError(f"mask_values must be unique, got {values!r}")
            set_(self, "mask_values", values)
        if self.class_colors is not None:
            colors = _check_colors("class_colors", self.class_colors)
            _check_length("class_colors", colors, n, "classes")
            set_(self, "class_colors", colors)
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if value is None:
                continue
            stats = _as_tuple(name, value)
            _check_length(name, stats, self.in_channels, "input channels")
            low = 1e-12 if name == "image_std" else -1e6
            set_(self, name, tuple(_check_float(name, v, low, 1e6, high_open=False) for v in stats))
        if (self.image_mean is None) != (self.image_std is None):
            raise ConfigError("image_mean and image_std must be given together (or neither)")
        if self.ignore_index is not None:
            _check_int("ignore_index", self.ignore_index, -(2**31), 2**31 - 1)
            if 0 <= self.ignore_index < n:
                raise ConfigError(
                    f"ignore_index={self.ignore_index} is a real class (0..{n - 1}); "
                    "use a value outside the classes, e.g. 255 or -100"
                )
        if self.ignore_colors is not None:
            if self.ignore_index is None:
                raise ConfigError("ignore_colors needs an ignore_index for those pixels")
            set_(self, "ignore_colors", _check_colors("ignore_colors", self.ignore_colors))
        if self.tta_flips is not None:
            flips = _as_tuple("tta_flips", self.tta_flips)
            for flip in flips:
                _check_choice("each of tta_flips", flip, TTA_FLIPS)
            set_(self, "tta_flips", tuple(f for f in TTA_FLIPS if f in flips))
        if self.metrics is not None:
            if not isinstance(self.metrics, Mapping):
                raise ConfigError(
                    f"metrics must be a mapping of name to number, got {self.metrics!r}"
                )
            for key, value in self.metrics.items():
                if not isinstance(key, str):
                    raise ConfigError(f"metrics keys must be strings, got {key!r}")
                # NaN/inf would be written to config.json as NaN/Infinity, which is not JSON:
                # the saved checkpoint could never be loaded again. abs() <= max, not
                # isfinite(): that raises OverflowError on an int beyond any float.
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or not abs(value) <= sys.float_info.max
                ):
                    raise ConfigError(f"metrics[{key!r}] must be a finite number, got {value!r}")
            set_(self, "metrics", {k: float(v) for k, v in self.metrics.items()})

    # --- derived ---
    @property
    def size_multiple(self) -> int:
        """Height and width the network needs internally; ``forward`` pads to it."""
        return int(2**self.depth)

    def architecture(self) -> dict[str, Any]:
        """The fields that decide the layers (and so the weights' names and shapes)."""
        return {name: getattr(self, name) for name in ARCHITECTURE_FIELDS}

    def replace(self, **changes: Any) -> UNetConfig:
        """Return a copy with ``changes`` applied and validated.

        Args:
            **changes: new values of config fields, by name.

        Returns:
            The new config; this one is unchanged (it is frozen).

        Raises:
            ConfigError: an unknown field name, or a value ``__post_init__`` refuses.
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid: {_field_names()}")
        return dataclasses.replace(self, **changes)

    # --- JSON ---
    def to_dict(self) -> dict[str, Any]:
        """JSON-native dict (lists, not tuples) including ``format_version``."""
        out: dict[str, Any] = {"format_version": FORMAT_VERSION}
        for f in dataclasses.fields(self):
            out[f.name] = _to_json(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> UNetConfig:
        """Build a config from ``to_dict()`` output, refusing anything it does not know.

        Args:
            data: the parsed JSON object.
            source: where it came from, for error messages (a file path, say).

        ``weights_sha256`` (``WEIGHTS_DIGEST_KEY``) is ignored: ``from_pretrained`` checks it.

        Raises:
            ConfigError: unknown keys, a newer ``format_version``, wrong types or ranges.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        data.pop(WEIGHTS_DIGEST_KEY, None)
        version = data.pop("format_version", FORMAT_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigError(
                f"{source}: format_version must be a positive integer, got {version!r}"
            )
        if version > FORMAT_VERSION:
            raise ConfigError(
                f"{source}: format_version {version} is newer than this unetseg understands "
                f"({FORMAT_VERSION}); upgrade unetseg (pip install -U unetseg)"
            )
        # key=str: a mapping from elsewhere than JSON may mix int and str keys.
        unknown = sorted(set(data) - set(_field_names()), key=str)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; valid keys: {_field_names()}")
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(UNetConfig)]


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _to_json(v) for k, v in value.items()}
    return value
