"""What the demo notebooks (notebooks/) stand on: the world of a preset and a trained model, built with the code
`newsrec demo` and `newsrec train` use, kept under var/ (or $NEWSREC_VAR_DIR)."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PRESET = "small"  # the demo's; the notebook tests set NEWSREC_PRESET=tiny


def preset_name() -> str:
    return os.environ.get("NEWSREC_PRESET") or DEFAULT_PRESET


def var_dir() -> Path:
    """$NEWSREC_VAR_DIR (the notebook tests point it at a temporary directory), else <repo>/var (git-ignored)."""
    return Path(os.environ["NEWSREC_VAR_DIR"]) if os.environ.get("NEWSREC_VAR_DIR") else REPO / "var"


def state_dir(preset: str) -> Path:
    """Where the notebooks of a preset keep their registry, services and results."""
    return var_dir() / "notebooks" / preset


def ensure_world(preset: str) -> Path:
    """var/worlds/<preset>, written (once) the way `newsrec demo` writes it."""
    from data.synth import preset as get_preset
    from data.synth import write_world

    world = var_dir() / "worlds" / preset
    if not (world / "truth" / "world.json").exists():
        write_world(get_preset(preset), world)
    return world


def training_config(preset: str):
    """The TrainConfig the notebooks use: the default, except on tiny (6k impressions) where more, smaller ranker
    steps are needed — with 1 epoch each the model stays below popularity (AUC 0.56 vs 0.60 on tiny's dev split)."""
    from recsys.train import TrainConfig

    cfg = TrainConfig()
    if preset != "tiny":
        return cfg
    return replace(cfg, retrieval=replace(cfg.retrieval, epochs=3), ranker=replace(cfg.ranker, epochs=8, batch_size=1024))


def ensure_model(preset: str) -> tuple[Path, Path]:
    """(world dir, registry dir) with a current model version, trained here if the registry has none."""
    from recsys.registry import ModelRegistry
    from recsys.train import train

    world, registry = ensure_world(preset), ModelRegistry(state_dir(preset) / "registry")
    if not registry.root.is_dir() or registry.current() is None:
        train(world, registry, training_config(preset))
    return world, registry.root
