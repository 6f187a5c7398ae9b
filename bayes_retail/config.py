"""Fitting configurations: TOML files with one section per stage (``inference/configs/``).

A configuration is named (``quick``, ``default``, ...: a file
``inference/configs/NAME.toml`` of the source tree) or given as a path. Keys a
file leaves out take the defaults of the stage's config class, so the defaults
are visible in one place (the dataclass) and a file says only what it changes.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
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


def load_config(name_or_path: str | os.PathLike = "default", *, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a configuration: ``{"name": ..., "path": ..., "sections": {stage: {key: value}}}``.

    A file may start with ``extends = "NAME"`` (a configuration name, or a
    path relative to the file): it then holds only what it changes, and every
    other key comes from that configuration (sections merged key by key,
    ``[sampler.STAGE]`` tables too). So a held-out configuration fits exactly
    the model its base fits, and cannot drift from it.
    """
    path = config_path(name_or_path)
    try:
        sections = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc})") from exc
    base = sections.pop("extends", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: extends must be a configuration name or path, got {base!r}")
        if path.resolve() in _seen:
            raise ConfigError(f"{path}: configurations extend each other in a cycle "
                              f"({' -> '.join(p.name for p in (*_seen, path.resolve()))})")
        relative = path.parent / base
        parent = load_config(relative if relative.suffix == ".toml" else base, _seen=(*_seen, path.resolve()))
        sections = _merged(parent["sections"], sections)
    return {"name": path.stem, "path": str(path), "sections": sections}


def _merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` laid over it, tables merged key by key (recursively)."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


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


def parse_weeks(spec: str | None) -> tuple[int, ...] | None:
    """Weeks named by a spec like ``"2-26,37-53"`` (ranges inclusive); ``None`` or ``"all"`` = every week.

    The fitted stages score only these weeks (``holdout`` leaves out 27-36,
    ``seasonal`` keeps 1-40); the other weeks stay in the panels as history.
    """
    if spec is None or str(spec).strip().lower() in ("", "all"):
        return None
    weeks: set[int] = set()
    for part in str(spec).split(","):
        bounds = part.strip().split("-")
        try:
            lo, hi = (int(bounds[0]), int(bounds[-1])) if len(bounds) in (1, 2) else (None, None)
        except ValueError:
            lo = hi = None
        if lo is None or lo < 1 or hi < lo:
            raise ConfigError(f"weeks: cannot read {part.strip()!r} in {spec!r} (expected e.g. '2-26,37-53')")
        weeks.update(range(lo, hi + 1))
    return tuple(sorted(weeks))


def week_mask(axis, weeks):
    """Boolean mask of ``axis`` (a stage's week numbers) over the selected ``weeks``; none selected is an error."""
    import numpy as np

    keep = np.isin(axis, np.asarray(weeks))
    if not keep.any():
        raise ValueError(f"none of the selected weeks is in the data (weeks {min(axis)}-{max(axis)})")
    return keep


@dataclass(frozen=True)
class DataSelection:
    """The ``[data]`` section: which weeks and households the Bayesian stages fit.

    Attributes
    ----------
    weeks
        Scored weeks, e.g. ``"2-26,37-53"`` (none = all).
    fit_share
        Share of the households the shopper stages may fit on (1 = all). The
        others are held out for the out-of-household check (new customers
        against them: ``bayes-retail ppc --mode new --held-out``). Prices,
        choice sets and the marketing signal's scale still come from every
        household's lines: they describe the market, not a shopper.
    split_seed
        Seed of the split (independent of the fit's seed, so refits with other
        seeds keep the same held-out households).
    """

    weeks: str | None = None
    fit_share: float = 1.0
    split_seed: int = 0

    def __post_init__(self) -> None:
        parse_weeks(self.weeks)
        if isinstance(self.fit_share, bool) or not isinstance(self.fit_share, (int, float)) or not 0 < self.fit_share <= 1:
            raise ValueError(f"fit_share must be in (0, 1], got {self.fit_share!r}")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int) or self.split_seed < 0:
            raise ValueError(f"split_seed must be a non-negative integer, got {self.split_seed!r}")

    def household_split(self, household_ids) -> tuple:
        """Sorted ``(fitted, held_out)`` ids of ``household_ids`` (held-out empty when ``fit_share`` is 1)."""
        import numpy as np

        ids = np.sort(np.asarray(household_ids))
        if self.fit_share >= 1:
            return ids, ids[:0]
        n_fit = int(round(self.fit_share * ids.size))
        if not 0 < n_fit < ids.size:
            raise ConfigError(f"fit_share {self.fit_share} of {ids.size} households leaves no household on one side")
        order = np.random.default_rng(self.split_seed).permutation(ids.size)
        return np.sort(ids[order[:n_fit]]), np.sort(ids[order[n_fit:]])

    @property
    def week_numbers(self) -> tuple[int, ...] | None:
        return parse_weeks(self.weeks)
