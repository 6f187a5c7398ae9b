"""Fitting configurations: TOML files with one section per stage (``inference/configs/``).

A configuration is named (``quick``, ``default``, ...: a file
``inference/configs/NAME.toml`` of the source tree) or given as a path. Keys a
file leaves out take the defaults of the stage's config class, so the defaults
are visible in one place (the dataclass) and a file says only what it changes.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from bayes_retail.errors import BayesRetailError

#: Where named configurations live (the repository's inference/configs).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "inference" / "configs"


class ConfigError(BayesRetailError):
    """A configuration that cannot be used: unknown name, unreadable file, unknown key."""


def config_path(name_or_path: str | os.PathLike) -> Path:
    """The file behind a configuration name or path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        if not candidate.exists():
            raise ConfigError(f"{candidate}: no such configuration file")
        return candidate
    named = CONFIG_DIR / f"{name_or_path}.toml"
    if not named.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.toml")) if CONFIG_DIR.exists() else []
        raise ConfigError(f"unknown configuration {name_or_path!r} (known: {', '.join(known) or 'none found'})")
    return named


def load_config(name_or_path: str | os.PathLike = "default") -> dict:
    """Read a configuration: ``{"name": ..., "path": ..., "sections": {stage: {key: value}}}``."""
    path = config_path(name_or_path)
    try:
        sections = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc})") from exc
    return {"name": path.stem, "path": str(path), "sections": sections}


def stage_config(config: dict, stage: str, cls):
    """Build ``cls`` (a dataclass) from the ``stage`` section; unknown keys are an error."""
    section = dict(config["sections"].get(stage, {}))
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{config['path']}: unknown key(s) in [{stage}]: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return cls(**section)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{config['path']}: [{stage}]: {exc}") from exc
