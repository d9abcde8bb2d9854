"""Self-describing checkpoints: ``save_pretrained``, ``from_pretrained``, ``push_to_hub``.

A checkpoint is a folder (or a Hugging Face Hub model repo) holding

- ``config.json``: ``UNetConfig.to_dict()``: architecture, classes, preprocessing, metrics;
- ``model.safetensors``: the weights, BatchNorm running statistics included;
- ``README.md``: a model card generated from the config (``model_card.py``).

This follows huggingface_hub's ``PyTorchModelHubMixin`` but overrides its lenient defaults:
key matching is strict, there is no pickle fallback (``.bin``/``.pt`` are refused, never
loaded), a missing or unknown config is an error rather than a log line, and the weights'
header is checked against the config before any tensor is read (``safe_load.py``).

The three files cannot be renamed into place in one step, so a crash between two renames
could leave new weights beside an old config, which would load as a silently wrong model.
``config.json`` and the weights' header metadata therefore both record the SHA-256 of the
tensor data (``weights_sha256``), and ``from_pretrained`` refuses files whose records differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import safetensors.torch
import torch
from huggingface_hub import HfApi
from torch import nn

from ._locate import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    check_same_save,
    read_config,
    read_saved_config,
    resolve_checkpoint,
)
from ._utils import check_device, logger, replace_together
from .config import WEIGHTS_DIGEST_KEY, UNetConfig
from .errors import ConfigError, WeightsError
from .model_card import render_model_card
from .safe_load import load_safetensors

__all__ = ["CARD_NAME", "CONFIG_NAME", "WEIGHTS_NAME", "HubMixin", "read_config"]

CARD_NAME = "README.md"

_M = TypeVar("_M", bound="HubMixin")

# The mixin is an nn.Module for the type checker (it uses state_dict, load_state_dict, ...)
# but a plain class at run time, so UNet(HubMixin, nn.Module) has one Module in its MRO.
if TYPE_CHECKING:
    _Base = nn.Module
else:
    _Base = object


def _fine_tune_config(saved: UNetConfig, num_classes: int | None) -> UNetConfig:
    if num_classes is None:
        return saved
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise ConfigError(f"num_classes must be an integer, got {num_classes!r}")
    if num_classes == saved.num_classes:
        return saved
    # The old classes' metadata describes a head we are about to replace; what describes
    # the input (channels, mean/std) stays, since the kept layers were trained on it.
    ignore = saved.ignore_index
    return saved.replace(
        num_classes=num_classes,
        class_names=None,
        mask_encoding=None,
        mask_values=None,
        class_colors=None,
        ignore_colors=None,
        metrics=None,
        ignore_index=None if ignore is not None and 0 <= ignore < num_classes else ignore,
    )


def _weights_file(state: dict[str, torch.Tensor]) -> tuple[bytes, str]:
    """``model.safetensors``'s bytes, whose metadata records the SHA-256 of their tensor data.

    Returns:
        The file's bytes and that digest (hex).
    """
    # Serialise once to hash the data section, then again with its digest in the header:
    # the data section does not depend on the metadata, so the digest stays true.
    draft = safetensors.torch.save(state)
    (header_len,) = struct.unpack("<Q", draft[:8])
    digest = hashlib.sha256(memoryview(draft)[8 + header_len :]).hexdigest()
    del draft
    metadata = {"format": "pt", "library": "unetseg", WEIGHTS_DIGEST_KEY: digest}
    return safetensors.torch.save(state, metadata=metadata), digest


class HubMixin(_Base):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for ``UNet``.

    The class using it must be an ``nn.Module`` with a ``config: UNetConfig`` attribute
    and a constructor taking that config.
    """

    config: UNetConfig

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        repo_id: str | None = None,
        license: str | None = None,
        datasets: Sequence[str] = (),
        tags: Sequence[str] = (),
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` and ``README.md`` to a folder.

        All three files are replaced together: if anything fails midway (a full disk, an
        exception) the folder keeps its previous files. A crash between the final renames
        can leave a mix, which ``from_pretrained`` refuses (both files record the weights'
        SHA-256). Temp files that killed saves left in the folder are removed.

        Args:
            save_directory: the folder, created if needed; other files in it are left alone.
            repo_id: Hub id shown in the model card's usage snippet.
            license: licence of the weights for the model card (``"mit"``...), if known.
            datasets: training data for the model card (Hub dataset ids or names).
            tags: extra Hub tags for the model card.

        Returns:
            The folder.

        Raises:
            ConfigError: ``model.config`` no longer describes the model's layers, or
                ``datasets``/``tags`` is not a list of strings.
            WeightsError: the weights are not in the default dtype (after ``model.half()``,
                say), or the folder cannot be written.
        """
        folder = Path(save_directory).expanduser()
        if folder.exists() and not folder.is_dir():
            raise WeightsError(f"{folder} is a file; pass a folder to save_pretrained()")
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        self._check_config_matches(state)
        if not all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()):
            logger.warning(
                "saving non-finite (NaN/inf) weights to %s; loading refuses them", folder
            )
        weights, digest = _weights_file(state)
        # The digest ties config.json to these very weights (see the module docstring).
        record = {**self.config.to_dict(), WEIGHTS_DIGEST_KEY: digest}
        config = json.dumps(record, indent=2) + "\n"
        card = render_model_card(
            self.config, repo_id=repo_id, license=license, datasets=datasets, tags=tags
        )
        files = [
            (WEIGHTS_NAME, weights),
            (CONFIG_NAME, config.encode()),
            (CARD_NAME, card.encode()),
        ]
        try:
            replace_together(folder, files)
        except OSError as err:
            raise WeightsError(f"cannot save to {folder}: {err}; previous files kept") from err
        logger.info("saved %s, %s and %s to %s", CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, folder)
        return folder

    def _check_config_matches(self, state: dict[str, torch.Tensor]) -> None:
        # A config edited with replace() (say num_classes) without rebuilding the model
        # would save a checkpoint that can never load: refuse it now, not at load time.
        with torch.device("meta"):
            expected = type(self)(self.config).state_dict()
        wrong = sorted(
            set(expected) ^ set(state)
            | {k for k in set(expected) & set(state) if expected[k].shape != state[k].shape}
        )
        if wrong:
            raise ConfigError(
                f"model.config does not describe this model's layers (differs at "
                f"{', '.join(wrong[:8])}); only change metadata fields with config.replace(), "
                "or build a new UNet for a new architecture"
            )
        # from_pretrained builds the model in the default dtype and refuses other dtypes, so
        # weights saved after model.half() would never load.
        dtypes = sorted({f"{state[k].dtype}" for k in state if state[k].dtype != expected[k].dtype})
        if dtypes:
            raise WeightsError(
                f"the model's weights are {', '.join(dtypes)} but from_pretrained() loads "
                f"{torch.get_default_dtype()}; call model.float() before saving"
            )

    @classmethod
    def from_pretrained(
        cls: type[_M],
        pretrained: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        num_classes: int | None = None,
        strict: bool = True,
        allow_nonfinite: bool = False,
        map_location: str | torch.device = "cpu",
    ) -> _M:
        """Load a model saved by ``save_pretrained``, from a folder or a Hub repo id.

        Nothing is unpickled. ``config.json`` is validated, then the weights' header is
        checked against the network the config describes (built on the meta device, so
        nothing is allocated), and only then are tensors read.

        Args:
            pretrained: a local folder, or a Hub repo id (``"org/name"``). A folder wins.
            revision: Hub branch, tag or commit.
            cache_dir: Hugging Face cache folder (default: ``HF_HUB_CACHE``).
            local_files_only: use only the cache, never the network (as does
                ``HF_HUB_OFFLINE=1``).
            token: Hub token for private or gated repos.
            num_classes: fine-tune to this many classes: every layer but the head is
                loaded, the head is freshly initialised and the old classes' metadata
                (names, mask values, colours, metrics) is dropped.
            strict: refuse missing or unexpected weights (``False``: missing ones keep
                their initial values, unexpected ones are ignored; both are logged).
                Shapes and dtypes must match either way.
            allow_nonfinite: load NaN/inf weights instead of refusing them.
            map_location: device to put the model on.

        Returns:
            The model, in eval mode.

        Raises:
            WeightsError: files missing, unsafe (pickle), corrupt, or not fitting the config;
                ``config.json`` and the weights from different saves; a ``map_location``
                this machine cannot use.
            ConfigError: ``config.json`` is invalid, or ``num_classes`` is.
        """
        device = check_device(map_location, WeightsError)  # before reading anything
        config_path, weights_path = resolve_checkpoint(
            pretrained,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        saved, digest = read_saved_config(config_path)
        check_same_save(config_path, weights_path, digest)  # before a mix fails less clearly
        config = _fine_tune_config(saved, num_classes)
        with torch.device("meta"):  # shapes and dtypes only, no memory
            expected = cls(saved).state_dict()
            fresh = set() if config is saved else _differing(expected, cls(config).state_dict())
        tensors = load_safetensors(
            weights_path,
            expected,
            strict=strict,
            allow_nonfinite=allow_nonfinite,
            context=f" that {config_path} describes",
        )
        model = cls(config)
        for name in fresh:
            tensors.pop(name, None)
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        missing = sorted(set(missing) - fresh)
        if missing or unexpected:  # only reachable with strict=False
            logger.warning(
                "%s: kept initial values for %s; ignored %s", weights_path, missing, unexpected
            )
        if fresh:
            logger.info(
                "fine-tuning: loaded every layer but %s; new head with %d classes (was %d)",
                sorted(fresh),
                config.num_classes,
                saved.num_classes,
            )
        model.to(device)
        model.eval()
        return model

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        commit_message: str = "Upload unetseg model",
        revision: str | None = None,
        create_pr: bool = False,
        license: str | None = None,
        datasets: Sequence[str] = (),
        tags: Sequence[str] = (),
    ) -> str:
        """Upload the checkpoint (``save_pretrained``'s three files) to a Hub model repo.

        The repo is created if needed. Only ``config.json``, ``model.safetensors`` and
        ``README.md`` are uploaded, from a fresh temporary folder, so no pickle or stray
        file can go with them.

        Args:
            repo_id: ``"org/name"`` or ``"name"`` (under your account).
            private: create the repo private (has no effect on an existing repo).
            token: Hub token (default: the one saved by ``hf auth login``).
            commit_message: message of the upload commit.
            revision: branch to commit to (default: ``main``).
            create_pr: open a pull request instead of committing directly.
            license: licence for the model card, if known.
            datasets: training data for the model card.
            tags: extra Hub tags for the model card.

        Returns:
            The URL of the commit (or pull request).

        Raises:
            ConfigError: ``model.config`` no longer describes the model's layers, or
                ``datasets``/``tags`` is not a list of strings.
            WeightsError: the Hub refused or failed the request (no token or write access,
                an invalid repo id, a ``revision`` branch that does not exist, ...). The
                three files go up in one commit, so the repo never holds a mix of old and new.
        """
        api = HfApi(token=token)
        with tempfile.TemporaryDirectory(prefix="unetseg-push-") as tmp:
            # Written before the repo is created, so a model that cannot be saved (half
            # weights, bad tags) is refused without leaving an empty repo behind.
            self.save_pretrained(
                tmp, repo_id=repo_id, license=license, datasets=datasets, tags=tags
            )
            try:
                # The Hub's own id ("name" becomes "user/name"), for the card's snippet.
                full_id = api.create_repo(
                    repo_id, private=private, exist_ok=True, repo_type="model"
                ).repo_id
            except (OSError, ValueError) as err:  # HTTP errors, no token, an invalid id
                raise _push_error(repo_id, err) from err
            if full_id != repo_id:
                repo_id = full_id
                self.save_pretrained(
                    tmp, repo_id=repo_id, license=license, datasets=datasets, tags=tags
                )
            try:
                info = api.upload_folder(
                    repo_id=repo_id,
                    folder_path=tmp,
                    repo_type="model",
                    commit_message=commit_message,
                    revision=revision,
                    create_pr=create_pr,
                )
            except (OSError, ValueError) as err:
                raise _push_error(repo_id, err) from err
        url = getattr(info, "pr_url", None) or getattr(info, "commit_url", "")
        return str(url)


def _push_error(repo_id: str, err: Exception) -> WeightsError:
    return WeightsError(
        f"cannot push to Hub model repo {repo_id!r}: {err}. Check the repo id, that your "
        "token can write to it (`hf auth login` or token=), and that revision= names an "
        "existing branch"
    )


def _differing(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> set[str]:
    """Names whose shapes change between two models (the head, when fine-tuning)."""
    return {k for k in old if k not in new or old[k].shape != new[k].shape} | (set(new) - set(old))
