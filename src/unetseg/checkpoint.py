"""Resumable training checkpoints: one safetensors file per checkpoint, never a pickle.

A checkpoint is a single ``NAME.safetensors`` file so that one atomic rename publishes
all of it: tensors (weights, optimizer moments, RNG states, the best weights so far) in
the body, and everything else (epoch, step, elapsed time, history, optimizer
hyper-parameters) as JSON in the header's ``__metadata__``. The JSON also holds a SHA-256
of that state and the tensor bytes, so a damaged file is refused instead of being
half-loaded (a flipped digit in the state would otherwise move the run's step silently).

A kill at any moment, even mid-write, leaves the previous checkpoint intact
(``_utils.atomic_write``: temp file, fsync, ``os.replace``). A kill mid-write also leaves
that temp file, as large as a checkpoint; ``remove_leftovers`` deletes such files when
fit() starts using the folder again, so repeated kills do not fill the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ._utils import atomic_write, logger, remove_leftover_temps
from .errors import CheckpointError
from .history import History
from .model import UNet

__all__ = [
    "CHECKPOINT_NAMES",
    "FORMAT",
    "Checkpoint",
    "TrainPosition",
    "find_latest",
    "optimizer_state_from_flat",
    "optimizer_state_to_flat",
    "read_checkpoint",
    "remove_leftovers",
    "restore_training",
    "training_checkpoint",
    "write_checkpoint",
]

# /2: the SHA-256 covers the JSON state as well as the tensor bytes.
FORMAT = "unetseg-train-checkpoint/2"
#: Files fit() writes: ``last`` after every epoch, ``interrupted`` on Ctrl-C.
CHECKPOINT_NAMES = ("last", "interrupted")
_META_KEY = "unetseg"
_MAX_HEADER = 100 * 2**20


@dataclass
class Checkpoint:
    """What a checkpoint holds: named tensors plus JSON-native state."""

    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    path: Path | None = None


def _digest(state_json: str, body: bytes) -> str:
    digest = hashlib.sha256(state_json.encode())
    digest.update(body)
    return digest.hexdigest()


def _split(blob: bytes, path: Path) -> tuple[dict[str, Any], bytes]:
    if len(blob) < 8:
        raise CheckpointError(f"{path}: truncated checkpoint ({len(blob)} bytes)")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > min(_MAX_HEADER, len(blob) - 8):
        raise CheckpointError(f"{path}: corrupt checkpoint header (claims {header_len} bytes)")
    try:
        header = json.loads(blob[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: corrupt checkpoint header ({err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt checkpoint header")
    return header, blob[8 + header_len :]


def write_checkpoint(path: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically.

    Args:
        path: destination file (``.safetensors``).
        checkpoint: the tensors and JSON-native state to store.

    Returns:
        The path written.

    Raises:
        CheckpointError: the file cannot be written (a full disk, say); any previous
            checkpoint at ``path`` is left intact.
    """
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in checkpoint.tensors.items()}
    state_json = json.dumps(checkpoint.state)
    # Serialise once to learn the body bytes, then again with their digest in the header;
    # the body does not depend on the metadata, so the digest stays valid.
    draft = st_save(tensors, metadata={_META_KEY: state_json})
    _, body = _split(draft, path)
    meta = {"format": FORMAT, "sha256": _digest(state_json, body), "state": state_json}
    blob = st_save(tensors, metadata={_META_KEY: json.dumps(meta)})
    try:
        with atomic_write(path, "wb") as handle:
            cast(IO[bytes], handle).write(blob)
    except OSError as err:
        raise CheckpointError(
            f"{path}: cannot write checkpoint ({err.strerror or err}); the previous one, if "
            "any, is intact: free disk space or pass another checkpoint_dir, then resume=True"
        ) from None
    return path


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint written by ``write_checkpoint``.

    Raises:
        CheckpointError: the file is missing, truncated, of another format, or its state
            or tensor bytes do not match the recorded digest.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no checkpoint there") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read checkpoint ({err})") from None
    header, body = _split(blob, path)
    raw = header.get("__metadata__", {}).get(_META_KEY)
    try:
        meta = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        meta = None
    found = meta.get("format") if isinstance(meta, dict) else None
    if isinstance(found, str) and found.startswith("unetseg-train-checkpoint/") and found != FORMAT:
        raise CheckpointError(
            f"{path}: written by another unetseg version (format {found!r}, this one reads "
            f"{FORMAT!r}); resume with that version, or delete it to start afresh"
        )
    if not isinstance(meta, dict) or found != FORMAT:
        raise CheckpointError(
            f"{path}: not a unetseg training checkpoint (expected format {FORMAT!r}); "
            "weights saved with save_pretrained() load with UNet.from_pretrained()"
        )
    state_json = meta.get("state")
    if not isinstance(state_json, str) or meta.get("sha256") != _digest(state_json, body):
        raise CheckpointError(
            f"{path}: checkpoint is corrupt (its state and tensor bytes do not match their "
            "SHA-256); delete it to start afresh or restore it from a backup"
        )
    try:
        tensors = st_load(blob)
        state = json.loads(state_json)
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: checkpoint is corrupt ({err})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint state is not a JSON object")
    return Checkpoint(tensors=tensors, state=state, path=path)


def find_latest(directory: str | os.PathLike[str]) -> Checkpoint:
    """The most advanced complete checkpoint in ``directory`` (by global step).

    Every checkpoint present is verified: a damaged one is an error, never skipped, so a
    resume cannot silently go back in time.

    Raises:
        CheckpointError: the folder holds no checkpoint, or one is corrupt.
    """
    directory = Path(directory)
    found = [directory / f"{name}.safetensors" for name in CHECKPOINT_NAMES]
    found = [p for p in found if p.exists()]
    if not found:
        raise CheckpointError(
            f"resume=True but {directory} holds no checkpoint "
            f"({', '.join(n + '.safetensors' for n in CHECKPOINT_NAMES)}); "
            "start a new run without resuming (resume=False; on the command line, drop --resume)"
        )
    checkpoints = [read_checkpoint(p) for p in found]
    return max(checkpoints, key=lambda c: int(c.state.get("step", -1)))


def remove_leftovers(directory: str | os.PathLike[str]) -> list[str]:
    """Delete the temp files that checkpoint writes killed mid-way left in ``directory``.

    Only the library's own temp names for ``CHECKPOINT_NAMES`` are touched, never other
    files, and not those of a writer still running on this machine. Meant for one process
    (rank 0 under torchrun); those of other machines are removed too, as a run resumed on
    another node leaves its old node's behind.

    Returns:
        The names removed (they are logged).
    """
    names = [f"{name}.safetensors" for name in CHECKPOINT_NAMES]
    return remove_leftover_temps(Path(directory), names, keep_unknown=False)


# --- optimizer state <-> (tensors, JSON) without pickle ---


def optimizer_state_to_flat(
    state_dict: dict[str, Any], prefix: str = "optimizer."
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors and JSON-native values.

    Returns:
        ``(tensors, json_state)``; ``optimizer_state_from_flat`` inverts it.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    groups = [dict(group) for group in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_state_from_flat(
    tensors: dict[str, torch.Tensor], json_state: dict[str, Any], prefix: str = "optimizer."
) -> dict[str, Any]:
    """Rebuild an ``optimizer.state_dict()`` from ``optimizer_state_to_flat`` output."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith(prefix):
            continue
        param_id, key = name[len(prefix) :].split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    for param_id, values in json_state["scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    groups = []
    for group in json_state["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


# --- a fit() run <-> checkpoint ---


@dataclass
class TrainPosition:
    """Where the run is; saved in checkpoints so a resume continues exactly there."""

    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # batches of this epoch already trained
    step: int = 0  # optimizer steps in all
    elapsed: float = 0.0  # seconds of fit() before this process
    loss_sum: float = 0.0  # this epoch so far
    loss_count: int = 0
    images: int = 0
    train_seconds: float = 0.0
    history: History = field(default_factory=History)


def training_checkpoint(
    model: UNet,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    best_state: dict[str, torch.Tensor] | None,
    pos: TrainPosition,
    settings: dict[str, Any],
) -> Checkpoint:
    """Everything needed to continue a run: weights, optimizer, RNG, best weights, position."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_json = optimizer_state_to_flat(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = cuda_state
    if best_state is not None:
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
    state = {
        "epoch": pos.epoch,
        "batch": pos.batch,
        "step": pos.step,
        "elapsed": pos.elapsed,
        "loss_sum": pos.loss_sum,
        "loss_count": pos.loss_count,
        "images": pos.images,
        "train_seconds": pos.train_seconds,
        "history": pos.history.to_dict(),
        "optimizer": opt_json,
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "architecture": model.config.architecture(),
        "settings": settings,
    }
    return Checkpoint(tensors=tensors, state=state)


def restore_training(
    checkpoint: Checkpoint,
    model: UNet,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    settings: dict[str, Any],
) -> tuple[TrainPosition, dict[str, torch.Tensor] | None]:
    """Load ``checkpoint`` into model, optimizer, scaler and RNG; return position and best weights.

    Raises:
        CheckpointError: the checkpoint was written for another architecture or optimizer.
    """
    state, tensors, where = checkpoint.state, checkpoint.tensors, checkpoint.path
    if state.get("architecture") != model.config.architecture():
        raise CheckpointError(
            f"{where}: checkpoint was written for {state.get('architecture')} but the model "
            f"is {model.config.architecture()}; build the same model to resume"
        )
    for key, value in settings.items():
        if state.get("settings", {}).get(key) != value:
            logger.warning(
                "resuming with %s=%r, the checkpoint was written with %r; the result will "
                "differ from an uninterrupted run",
                key,
                value,
                state.get("settings", {}).get(key),
            )
    try:
        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        model.load_state_dict(model_state, strict=True)
        optimizer.load_state_dict(
            optimizer_state_from_flat(tensors, state["optimizer"], prefix="optimizer.")
        )
        if state.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(tensors["rng.torch"])
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states)
        pos = TrainPosition(
            epoch=int(state["epoch"]),
            batch=int(state["batch"]),
            step=int(state["step"]),
            elapsed=float(state["elapsed"]),
            loss_sum=float(state["loss_sum"]),
            loss_count=int(state["loss_count"]),
            images=int(state["images"]),
            train_seconds=float(state["train_seconds"]),
            history=History.from_dict(state["history"]),
        )
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"{where}: checkpoint does not fit this model/optimizer ({err})"
        ) from None
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    logger.info("resumed from %s at epoch %d, step %d", where, pos.epoch + 1, pos.step)
    return pos, best
