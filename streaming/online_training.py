"""The online trainer's pure parts: the replay window and held-out slice, fine-tuning steps from the current
version's ranker weights, the no-regression gate, and staging a child version (towers copied unchanged)."""
from __future__ import annotations

import math
import shutil
import zlib
from collections import deque
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from recsys.bundle import RANKER, WEIGHTS
from recsys.export import check_parity, export_onnx
from recsys.metrics import per_impression_auc
from recsys.models.ranker import Ranker
from recsys.registry import MANIFEST
from streaming.online_rows import LabelledImpression


class OnlineTrainingConfig(BaseModel):
    """Defaults sized for this box's stream rates; the bench and tests pass their own (NEWSREC_TRAINING__*)."""

    model_config = ConfigDict(frozen=True)

    # Adam with a small rate: a few steps per micro-batch must not undo the offline model
    lr: float = Field(default=3e-4, gt=0)
    # After a micro-batch with enough new rows: steps enough for each new row to be drawn ~passes_per_row times
    # (recent_share of every step's rows are new ones), at most max_steps_per_batch. A fixed 4 steps per 64 new
    # rows drew each row ~30 times in bench drift, and at night's traffic every candidate failed the gate.
    passes_per_row: float = Field(default=2.0, gt=0)
    max_steps_per_batch: int = Field(default=16, ge=1)
    batch_rows: int = Field(default=512, ge=1)
    min_new_rows: int = Field(default=64, ge=1)          # new training rows needed before the next steps
    replay_rows: int = Field(default=50_000, ge=1)       # the recency window steps sample from
    recent_share: float = Field(default=0.5, gt=0, le=1)  # of a step's rows, the share drawn from the newest ones
    holdout_percent: int = Field(default=20, ge=1, le=99)  # impressions (by id hash) never trained on
    holdout_impressions: int = Field(default=400, ge=1)  # the gate scores the most recent this many of them
    min_holdout_impressions: int = Field(default=50, ge=1)
    auc_tolerance: float = 0.002      # "does not regress": AUC may trail by this (noise on a small slice) ...
    logloss_tolerance: float = 0.0    # ... and log loss may not be worse at all
    # event time a shown item may still be clicked (the synthetic world's last click comes ~80 s after)
    join_window_s: float = Field(default=300.0, gt=0)
    # wall seconds a partition may deliver nothing before it stops holding the event-time watermark back
    partition_idle_s: float = Field(default=30.0, gt=0)
    min_train_rows: int = Field(default=2_000, ge=1)     # rows in the window before the first step
    eval_every_s: float = Field(default=10.0, ge=0)      # wall seconds between gate evaluations
    # Version churn bound: at most one promotion per this many wall seconds (each promotion is a registry
    # version of ~10 MB and a hot swap in every replica, which re-encodes its catalogue).
    min_promote_interval_s: float = Field(default=60.0, ge=0)
    seed: int = 0

    def is_holdout(self, impression_id: str) -> bool:
        return zlib.crc32(impression_id.encode()) % 100 < self.holdout_percent


class RowWindow:
    """Labelled rows split by impression into a training ring (the recency window) and a held-out slice."""

    def __init__(self, cfg: OnlineTrainingConfig, n_features: int):
        self.cfg = cfg
        self.x = np.zeros((cfg.replay_rows, n_features), np.float32)
        self.y = np.zeros(cfg.replay_rows, np.float32)
        self.size, self.head, self.new_rows, self.trained_rows = 0, 0, 0, 0
        self.holdout: deque[LabelledImpression] = deque(maxlen=cfg.holdout_impressions)
        self.skipped_leaked = 0

    def add(self, imps: list[LabelledImpression]) -> None:
        for imp in imps:
            if imp.leaked:
                self.skipped_leaked += 1
            elif self.cfg.is_holdout(imp.impression_id):
                self.holdout.append(imp)
            else:
                self._append(imp.features, imp.labels)

    def _append(self, x: np.ndarray, y: np.ndarray) -> None:
        cap = self.cfg.replay_rows
        for s in range(0, len(y), cap):
            xs, ys = x[s:s + cap], y[s:s + cap]
            idx = (self.head + np.arange(len(ys))) % cap
            self.x[idx], self.y[idx] = xs, ys
            self.head = (self.head + len(ys)) % cap
            self.size = min(self.size + len(ys), cap)
            self.new_rows += len(ys)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One step's rows: recent_share from the rows that arrived since the last steps, the rest from the window."""
        n = min(self.cfg.batch_rows, self.size)
        n_recent = min(int(n * self.cfg.recent_share), self.new_rows, self.size)
        recent = (self.head - 1 - rng.integers(0, min(self.new_rows, self.size), n_recent)) % self.cfg.replay_rows
        rows = np.concatenate([recent, rng.integers(0, self.size, n - n_recent)])
        return self.x[rows], self.y[rows]

    def holdout_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features (R, F), labels (R,), impression group (R,)) of the held-out slice."""
        imps = list(self.holdout)
        if not imps:
            return np.zeros((0, self.x.shape[1]), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        return (np.concatenate([i.features for i in imps]), np.concatenate([i.labels for i in imps]),
                np.repeat(np.arange(len(imps)), [len(i.labels) for i in imps]))


def load_ranker(version_dir: Path) -> Ranker:
    """The version's ranker in torch (safetensors weights), hidden widths read from the weights."""
    state = load_file(str(Path(version_dir) / WEIGHTS["ranker"]))
    linear = sorted((int(k.split(".")[1]), v.shape[0]) for k, v in state.items()
                    if k.startswith("mlp.") and k.endswith(".weight"))
    model = Ranker(state["mean"].numel(), tuple(width for _, width in linear[:-1]))
    model.load_state_dict(state)
    return model.eval()


def fine_tune(model: Ranker, opt: torch.optim.Optimizer, window: RowWindow, rng: np.random.Generator) -> list[float]:
    """Adam steps on rows sampled from the window (see passes_per_row); standardization stays the parent's.
    Returns each step's loss."""
    cfg = window.cfg
    steps = math.ceil(cfg.passes_per_row * window.new_rows / (cfg.recent_share * cfg.batch_rows))
    losses = []
    model.train()
    for _ in range(min(max(steps, 1), cfg.max_steps_per_batch)):
        x, y = window.sample(rng)
        loss = F.binary_cross_entropy_with_logits(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        window.trained_rows += len(y)
    window.new_rows = 0
    model.eval()
    return losses


def holdout_metrics(model: Ranker, x: np.ndarray, y: np.ndarray, group: np.ndarray) -> dict[str, float]:
    """Log loss over all rows and mean per-impression AUC (impressions with a click and a non-click)."""
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        logloss = float(F.binary_cross_entropy_with_logits(logits, torch.from_numpy(y)).item())
    auc = per_impression_auc(group, y, logits.numpy())
    return {"logloss": logloss, "auc": float(auc.mean()) if auc.size else float("nan"), "rows": float(len(y)),
            "auc_impressions": float(auc.size)}


def gate(candidate: dict[str, float], current: dict[str, float], cfg: OnlineTrainingConfig) -> tuple[bool, str]:
    """Promote only if the candidate does not regress on the held-out slice: log loss no worse (within
    logloss_tolerance) and AUC no lower than current - auc_tolerance."""
    if not current["rows"] or np.isnan(candidate["auc"]) or np.isnan(current["auc"]):
        return False, "held-out slice has no impression with both a click and a non-click"
    ll_ok = candidate["logloss"] <= current["logloss"] + cfg.logloss_tolerance
    auc_ok = candidate["auc"] >= current["auc"] - cfg.auc_tolerance
    verdict = (f"logloss {candidate['logloss']:.4f} vs {current['logloss']:.4f}, "
               f"auc {candidate['auc']:.4f} vs {current['auc']:.4f}")
    return ll_ok and auc_ok, ("no regression: " if ll_ok and auc_ok else "regression: ") + verdict


def stage_child(parent_dir: Path, ranker: Ranker, out_dir: Path, parity_rows: np.ndarray) -> float:
    """A complete version directory in out_dir: the parent's towers, spec and weights copied byte for byte (so
    every replica's item vectors stay valid), the new ranker as safetensors + ONNX; returns the ONNX parity error."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for src in Path(parent_dir).iterdir():
        if src.is_file() and src.name not in (MANIFEST, RANKER, WEIGHTS["ranker"]):
            shutil.copyfile(src, out_dir / src.name)
    save_file({k: v.contiguous() for k, v in ranker.state_dict().items()}, str(out_dir / WEIGHTS["ranker"]))
    export_onnx(ranker, {"features": torch.zeros(2, ranker.mean.numel())}, "score", out_dir / RANKER)
    return check_parity(ranker, out_dir / RANKER, {"features": torch.from_numpy(parity_rows)})
