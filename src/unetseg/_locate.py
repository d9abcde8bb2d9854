"""Finding a checkpoint's files, in a local folder or the Hugging Face Hub, and its config.

``resolve_checkpoint`` turns what a user passes to ``from_pretrained`` into the paths of
``config.json`` and ``model.safetensors``: a local folder wins; anything else that looks like
a repo id is fetched through ``huggingface_hub.hf_hub_download`` (only those two files, never
a pickle), honouring ``local_files_only`` and ``HF_HUB_OFFLINE``. Every failure becomes a
``WeightsError`` that names the folder or repo and what to do. ``read_config`` reads
``config.json`` more strictly than ``json.load`` does, and ``check_same_save`` refuses a
``config.json`` and ``model.safetensors`` written by two different saves.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from huggingface_hub import _CACHED_NO_EXIST, constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .config import WEIGHTS_DIGEST_KEY, UNetConfig
from .errors import ConfigError, WeightsError
from .safe_load import read_metadata

__all__ = [
    "CONFIG_NAME",
    "PICKLE_SUFFIXES",
    "WEIGHTS_NAME",
    "check_same_save",
    "read_config",
    "read_saved_config",
    "resolve_checkpoint",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: A config is a few kB; anything much larger is not ours.
MAX_CONFIG_BYTES = 2**20
_DIGEST = re.compile(r"[0-9a-f]{64}")  # a SHA-256 as save_pretrained() writes it
#: Suffixes of pickle-based weights, which are refused, never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_CONVERT = (
    "unpickling can run arbitrary code, so unetseg never loads it. Convert it once, where you "
    "trust its source: model.load_state_dict(torch.load(path, weights_only=True)) on a UNet "
    "built with the same arguments, then model.save_pretrained(folder)"
)


def read_config(path: str | os.PathLike[str]) -> UNetConfig:
    """Read and validate ``config.json``; ``read_saved_config`` without the weights' digest."""
    return read_saved_config(path)[0]


def read_saved_config(path: str | os.PathLike[str]) -> tuple[UNetConfig, str | None]:
    """Read and validate ``config.json``, refusing anything unexpected.

    Besides ``UNetConfig.from_dict``'s checks (types, ranges, unknown keys, a newer
    ``format_version``), this refuses oversized files, invalid UTF-8 or JSON, duplicate keys
    and the non-standard ``NaN``/``Infinity`` literals.

    Args:
        path: the ``config.json`` file.

    Returns:
        The validated config, and the SHA-256 of the weights saved with it (None in files
        written before unetseg recorded it).

    Raises:
        WeightsError: the file is missing or unreadable.
        ConfigError: its content is not a valid unetseg config; the message names the file.
    """
    path = Path(path)
    fix = "re-save the model with model.save_pretrained() or correct the file"
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is far too large for a unetseg config")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(
            f"{path} is missing: unetseg needs it to rebuild the network and its "
            "preprocessing; save checkpoints with model.save_pretrained(folder)"
        ) from None
    except OSError as err:
        raise WeightsError(f"{path}: cannot read ({err.strerror or err})") from None

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"{path}: duplicate keys in one object: {sorted(keys)}; {fix}")
        return dict(pairs)

    def no_constants(name: str) -> Any:
        raise ConfigError(f"{path}: {name} is not valid JSON; {fix}")

    try:
        data = json.loads(
            raw.decode("utf-8"), object_pairs_hook=no_duplicates, parse_constant=no_constants
        )
    except ConfigError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # deep [[[...]]]
        raise ConfigError(f"{path}: not valid JSON ({err}); {fix}") from None
    digest = data.get(WEIGHTS_DIGEST_KEY) if isinstance(data, dict) else None
    if digest is not None and not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
        raise ConfigError(
            f"{path}: {WEIGHTS_DIGEST_KEY} must be the 64 hex digits save_pretrained() wrote, "
            f"got {digest!r}; {fix}"
        )
    return UNetConfig.from_dict(data, source=str(path)), digest


def check_same_save(config_path: Path, weights_path: Path, recorded: str | None) -> None:
    """Refuse a ``config.json`` and ``model.safetensors`` that come from different saves.

    ``save_pretrained`` records the SHA-256 of the tensor data in both files, so comparing
    the two records costs a header read, not a hash of the weights. Files saved before
    that record existed have it in neither and load as before.

    Args:
        config_path: the ``config.json`` read.
        weights_path: the ``model.safetensors`` beside it.
        recorded: the digest ``read_saved_config`` found in ``config.json``, if any.

    Raises:
        WeightsError: the records differ, or only one file has one; the message says how
            such a mix arises and what to do.
    """
    found = read_metadata(weights_path).get(WEIGHTS_DIGEST_KEY)
    if found == recorded:
        return
    config_says = (
        f"{CONFIG_NAME} was saved with weights {recorded[:12]}..."
        if recorded is not None
        else f"{CONFIG_NAME} records no weights"
    )
    weights_say = f"{found[:12]}..." if found is not None else "no record"
    records = f"{config_says}, {WEIGHTS_NAME} holds {weights_say}"
    sure = (
        f'set "{WEIGHTS_DIGEST_KEY}": "{found}" in {CONFIG_NAME}'
        if found is not None
        else f'delete "{WEIGHTS_DIGEST_KEY}" from {CONFIG_NAME}'
    )
    # Hub files of two commits (the repo changed between the downloads) lie in two folders.
    same = config_path.parent == weights_path.parent
    where = config_path.parent if same else f"{config_path} and {weights_path}"
    raise WeightsError(
        f"{where}: {CONFIG_NAME} and {WEIGHTS_NAME} come from different saves "
        f"({records}): a save_pretrained() interrupted between its renames, "
        "files copied from two saves, or a Hub repo updated between the two downloads. Save "
        "again with model.save_pretrained(folder) (for a Hub repo: load again, or pin "
        f"revision= to one commit); only if you know this config describes these weights, {sure}"
    )


def _local_files(folder: Path) -> tuple[Path, Path]:
    weights, config = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise WeightsError(
                f"{folder}: no {WEIGHTS_NAME}, only pickle weights ({', '.join(pickles)}); "
                + _CONVERT
            )
        raise WeightsError(
            f"{folder}: no {WEIGHTS_NAME}; a unetseg checkpoint folder holds {CONFIG_NAME} and "
            f"{WEIGHTS_NAME}, written by model.save_pretrained(folder)"
        )
    if not config.is_file():
        read_config(config)  # raises the missing-file error
    return config, weights


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")  # C:\...
    )


def _hub_files(
    repo_id: str,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    token: str | bool | None,
) -> tuple[Path, Path]:
    from . import __version__

    # Read the environment now, not at import time, so HF_HUB_OFFLINE=1 set by a user
    # (or a test) after importing still means "never touch the network".
    offline = (
        local_files_only
        or constants.HF_HUB_OFFLINE
        or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    )
    where = f"{repo_id!r}" + (f" (revision {revision!r})" if revision else "")
    paths = []
    for filename in (CONFIG_NAME, WEIGHTS_NAME):  # never a .bin: only these two are fetched
        try:
            path = hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=None if cache_dir is None else Path(cache_dir),
                local_files_only=offline,
                token=token,
                library_name="unetseg",
                library_version=__version__,
            )
        except LocalEntryNotFoundError:
            # An earlier download found the file missing from the repo: fetching it "once
            # with network access" would not help.
            known_missing = try_to_load_from_cache(
                repo_id,
                filename,
                cache_dir=None if cache_dir is None else Path(cache_dir),
                revision=revision,
            )
            if known_missing is _CACHED_NO_EXIST:
                raise WeightsError(
                    f"Hub repo {where} has {_missing(filename)}; the Hugging Face cache "
                    "recorded the file missing when the repo was last downloaded"
                ) from None
            cache = Path(cache_dir or constants.HF_HUB_CACHE)
            reason = (
                "offline mode is on (HF_HUB_OFFLINE=1 or local_files_only=True)"
                if offline
                else "the Hub cannot be reached"
            )
            raise WeightsError(
                f"cannot load {where}: {reason} and {filename} is not in the Hugging Face "
                f"cache at {cache} (nor is there a local folder of that name). Fetch it once "
                f"with network access (UNet.from_pretrained({repo_id!r})), or download it "
                f"elsewhere with `hf download {repo_id} {CONFIG_NAME} {WEIGHTS_NAME} "
                "--local-dir DIR` and pass that folder"
            ) from None
        except EntryNotFoundError:
            raise WeightsError(f"Hub repo {where} has {_missing(filename)}") from None
        except RevisionNotFoundError:
            raise WeightsError(
                f"Hub repo {repo_id!r} has no revision {revision!r}; pass a branch, tag or "
                "commit that exists"
            ) from None
        except RepositoryNotFoundError:  # also GatedRepoError
            raise WeightsError(
                f"{repo_id!r} is not a local folder, and the Hub has no model repo of that "
                "name that you can read: check the spelling, or for a private or gated repo "
                "pass token= (or run `hf auth login`)"
            ) from None
        except HFValidationError:
            raise WeightsError(
                f"{repo_id!r} is neither an existing folder nor a valid Hub repo id ('org/name')"
            ) from None
        except OSError as err:  # HTTP errors, timeouts, a full cache disk
            raise WeightsError(f"cannot download {filename} of {where}: {err}") from None
        paths.append(Path(path))
    return paths[0], paths[1]


def _missing(filename: str) -> str:
    if filename == WEIGHTS_NAME:
        return (
            f"no {WEIGHTS_NAME}; unetseg loads only safetensors, never pickle files such as "
            "pytorch_model.bin"
        )
    return (
        f"no {CONFIG_NAME}, so it is not a unetseg checkpoint (model.save_pretrained() and "
        "model.push_to_hub() write one)"
    )


def resolve_checkpoint(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> tuple[Path, Path]:
    """Find ``config.json`` and ``model.safetensors`` of a local folder or Hub repo.

    A local folder wins over a Hub repo of the same name.

    Returns:
        ``(config_path, weights_path)``.

    Raises:
        WeightsError: nothing usable found; the message says where it looked and what to do.
    """
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        if revision is not None:
            # A folder named like the repo ("org/name", written by save_pretrained) would
            # otherwise load instead of the pinned Hub revision, without a word.
            raise WeightsError(
                f"{path} is a local folder, which has no revisions, so revision={revision!r} "
                "cannot apply; leave revision out to load the folder, or, for the Hub repo "
                "of that name, run from another directory (a local folder wins over a repo id)"
            )
        return _local_files(path)
    if path.is_file():
        raise WeightsError(
            f"{path} is a file; pass the folder that holds {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    if _looks_like_path(name) or not isinstance(name_or_path, str):
        raise WeightsError(f"{path}: no such folder")
    return _hub_files(
        name,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )
