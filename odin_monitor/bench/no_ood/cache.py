"""Score grids computed once: ``grid_scores`` blocks on disk, looked up pair by pair.

A block is one ``grid_scores`` call: float64 ``(len(T), len(ε), N)`` saved as
``r{depth}_{set}_{digest}.npz`` with its ``T``, ``ε``, the images' and the model's
fingerprints. A block is reused only where both fingerprints match, so a cache made with
other sample sizes, other splits or other weights is never read as this run's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from odin_monitor.models import CIFAR_RESNET_NORMALIZATION
from odin_monitor.normalization import Normalization
from odin_monitor.record import content_sha256
from odin_monitor.scoring import grid_scores

__all__ = ["Pair", "ScoreCache", "model_sha256"]

Pair = tuple[float, float]


def model_sha256(model: nn.Module) -> str:
    """SHA-256 of a model's state (names and float64 values), for cache keys."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(value.detach().cpu().double().numpy()).tobytes())
    return h.hexdigest()


class ScoreCache:
    """ODIN scores of one model by ``(set, T, ε)``, computed once and kept.

    Args:
        model: The classifier.
        depth: Its ResNet depth (part of the file names).
        folder: Where blocks are read and written; ``None`` = memory only.
        normalization: The model's input normalisation.
        batch_size: Images per chunk of ``grid_scores``.
        device: Where to compute.
    """

    def __init__(
        self,
        model: nn.Module,
        depth: int,
        folder: Path | None,
        *,
        normalization: Normalization | None = CIFAR_RESNET_NORMALIZATION,
        batch_size: int = 250,
        device: str = "cpu",
    ) -> None:
        self.model, self.depth, self.folder = model, depth, folder
        self.normalization, self.batch_size, self.device = normalization, batch_size, device
        self.model_sha = model_sha256(model)
        self._known: dict[tuple[str, str], dict[Pair, np.ndarray]] = {}
        #: Blocks computed by this run (the rest came from the folder).
        self.computed: list[str] = []

    def _pairs(self, name: str, images: torch.Tensor) -> dict[Pair, np.ndarray]:
        sha = content_sha256(images)
        key = (name, sha)
        if key not in self._known:
            known: dict[Pair, np.ndarray] = {}
            if self.folder is not None:
                for f in sorted(self.folder.glob(f"r{self.depth}_{name}_*.npz")):
                    with np.load(f) as block:
                        if (
                            str(block["images_sha"]) != sha
                            or str(block["model_sha"]) != self.model_sha
                        ):
                            continue
                        s = block["s"]
                        for i, t in enumerate(block["T"]):
                            for j, e in enumerate(block["E"]):
                                known.setdefault((float(t), float(e)), s[i, j])
            self._known[key] = known
        return self._known[key]

    def save_block(
        self,
        name: str,
        images: torch.Tensor,
        temps: Sequence[float],
        eps: Sequence[float],
        s: np.ndarray,
    ) -> None:
        """Keep a ``(len(T), len(ε), N)`` block of ``images``' scores (and write it)."""
        known = self._pairs(name, images)
        for i, t in enumerate(temps):
            for j, e in enumerate(eps):
                known[(float(t), float(e))] = s[i, j]
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        sha = content_sha256(images)
        tag = hashlib.sha256(f"{sha}{self.model_sha}{list(temps)}{list(eps)}".encode()).hexdigest()
        np.savez(
            self.folder / f"r{self.depth}_{name}_{tag[:16]}.npz",
            s=s,
            T=np.asarray(temps, dtype=np.float64),
            E=np.asarray(eps, dtype=np.float64),
            images_sha=sha,
            model_sha=self.model_sha,
        )

    def grid(
        self, name: str, images: torch.Tensor, temps: Sequence[float], eps: Sequence[float]
    ) -> np.ndarray:
        """float64 ``(len(T), len(ε), N)`` scores; computed (one block) unless all are known."""
        known = self._pairs(name, images)
        pairs = [(float(t), float(e)) for t in temps for e in eps]
        if not all(p in known for p in pairs):
            s = grid_scores(
                self.model,
                images,
                temperatures=temps,
                epsilons=eps,
                normalization=self.normalization,
                batch_size=self.batch_size,
                device=self.device,
            ).numpy()
            self.save_block(name, images, temps, eps, s)
            self.computed.append(f"{name} {len(temps)}x{len(eps)} (N={images.shape[0]})")
        return np.stack([np.stack([known[(float(t), float(e))] for e in eps]) for t in temps])

    def at(self, name: str, images: torch.Tensor, pairs: Sequence[Pair]) -> dict[Pair, np.ndarray]:
        """Scores at a few pairs: one block per ``T`` for the pairs not yet known."""
        known = self._pairs(name, images)
        missing: dict[float, list[float]] = {}
        for t, e in pairs:
            if (t, e) not in known and e not in missing.setdefault(t, []):
                missing[t].append(e)
        for t, eps in missing.items():
            if eps:
                self.grid(name, images, [t], sorted(eps))
        return {(t, e): known[(t, e)] for t, e in pairs}
