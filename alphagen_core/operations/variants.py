"""Named variants: a replay under other strategy and risk settings, and what a version records.

A variant is a name and `KEY=VALUE` overrides of the settings the engine and the fill model run
with, named as their environment variables. The overrides go through `Settings` itself, so they
are validated exactly as the environment is; `base` is the environment's settings, unchanged.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the settings import the engine: `alphagen --help` lists VARIANT_KEYS without it
    from alphagen_core.operations.settings import Settings

BASE = "base"

# The settings a variant may change: those `Settings.strategy_config()` and `risk_config()` are
# built from, and the fill model's half-spread. Nothing else (brokers, data sources, paths,
# secrets) belongs to a strategy, and only these are recorded with a version.
VARIANT_KEYS = (
    "RISK_STOP_LOSS_MULTIPLE",
    "RISK_TAKE_PROFIT_MULTIPLE",
    "RISK_MAX_POSITION_SIZE",
    "RISK_TRADING_CAPITAL",
    "RISK_MAX_DAILY_LOSS",
    "RISK_MAX_ENTRIES_PER_DAY",
    "ORDER_MAX_DEVIATION",
    "FEE_PER_CONTRACT",
    "FEE_REGULATORY_PER_CONTRACT",
    "SIGNAL_COOLDOWN_SECONDS",
    "NO_ENTRY_MINUTES_BEFORE_CLOSE",
    "FLATTEN_MINUTES_BEFORE_CLOSE",
    "OPTION_STRIKE_OFFSET",
    "MARKET_DATA_STALE_SECONDS",
    "PAPER_HALF_SPREAD",
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=,+-]{0,199}")


class VariantError(ValueError):
    """A variant that cannot run: a bad name, key or value. Never echoes a value."""


def variant_settings(variant: str, overrides: Mapping[str, str]) -> Settings:
    """The environment's settings with the variant's overrides, validated as the environment is."""
    from alphagen_core.operations.settings import SettingsError, load_settings

    if not _NAME.fullmatch(variant):
        raise VariantError(f"variant name {variant!r}: letters, digits and _ . = , + - only, at most 200")
    if variant == BASE and overrides:
        raise VariantError("variant 'base' is the environment's settings: name the variant to --set anything")
    if unknown := sorted(k for k in overrides if k.upper() not in VARIANT_KEYS):
        raise VariantError(f"not a strategy or risk setting: {', '.join(unknown)} "
                           f"(a variant may set {', '.join(VARIANT_KEYS)})")
    try:
        return load_settings(**{key.lower(): value for key, value in overrides.items()})
    except SettingsError as exc:
        raise VariantError(str(exc)) from None


def parse_assignments(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`KEY=VALUE` strings as a dict, keys upper-cased (as the environment's names)."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():  # not echoed: it may be a value (a secret) without its key
            raise VariantError("expected KEY=VALUE: an argument has no KEY= before its value")
        overrides[key.strip().upper()] = value.strip()
    return overrides


def parse_sweep(pairs: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """`KEY=V1,V2,...` strings as KEY -> values (keys upper-cased)."""
    return {key: [v.strip() for v in values.split(",")] for key, values in parse_assignments(pairs).items()}


def sweep_variants(axes: Mapping[str, list[str]]) -> list[tuple[str, dict[str, str]]]:
    """The grid of `axes` (KEY -> values) as variants, each named from its values
    (`risk_stop_loss_multiple=1.5`, several keys joined by commas) and validated."""
    grid = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
    if not grid or any(not values or "" in values for values in axes.values()):
        raise VariantError("a sweep needs KEY=V1,V2,... with at least one value per key")
    variants = [(",".join(f"{key.lower()}={value}" for key, value in point.items()), point) for point in grid]
    for name, overrides in variants:
        variant_settings(name, overrides)
    return variants


def recorded_settings(settings: Settings) -> dict[str, object]:
    """The strategy and risk settings a version ran with, by environment name (no secrets:
    only the variant keys)."""
    return {key: getattr(settings, key.lower()) for key in VARIANT_KEYS}


def version_row(variant: str, settings: Settings) -> dict[str, str]:
    """The `versions` row of a version: its variant, settings (JSON) and code version."""
    return {"variant": variant, "settings": json.dumps(recorded_settings(settings), sort_keys=True),
            "code_version": code_version()}


# What a run's figures depend on, relative to the checkout's root.
CODE_PATHS = ("alphagen_core", "alphagen_dagster", "dbt_pnl")


@lru_cache(maxsize=1)
def code_version() -> str:
    """The package version, plus the git commit of the checkout it runs from when there is one
    (`checkout_version`)."""
    try:
        package = version("alphagen")
    except PackageNotFoundError:
        package = "unknown"
    return f"{package}+{checkout_version(Path(__file__).resolve().parents[2]) or 'unknown'}"


def checkout_version(root: Path) -> str | None:
    """The commit of the git checkout at `root`, with `.dirty-<hash>` when its code (CODE_PATHS)
    differs from that commit: edited or new files, hashed with their content, so that two runs
    of the same edits share a code version and runs of different edits do not."""
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return None
    diff = _git(root, "diff", "HEAD", "--binary", "--", *CODE_PATHS)
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", *CODE_PATHS)
    if not diff and not untracked:
        return commit
    digest = hashlib.sha256((diff or "").encode())
    for name in sorted(filter(None, (untracked or "").split("\0"))):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return f"{commit}.dirty-{digest.hexdigest()[:12]}"


def _git(root: Path, *args: str) -> str | None:
    """git's output in `root` (stripped), or None when git or the checkout is not there."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
