"""The layers of ARCHITECTURE.md: import-linter's contracts (pyproject.toml) hold, the
folder tree ARCHITECTURE.md draws is the tree on disk, module for module, and no code uses a
private Dagster or dbt module."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("alphagen_core", "alphagen_dagster")


@pytest.mark.integration
def test_import_linter_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken", result.stdout), result.stdout


def modules_on_disk() -> set[str]:
    return {
        p.relative_to(REPO).as_posix()
        for package in PACKAGES
        for p in (REPO / package).rglob("*.py")
        if p.name != "__init__.py"
    }


def modules_in_architecture_md() -> set[str]:
    """The tree block under "## Layers": a line `<indent>name/  description` is a folder two
    spaces deeper than its parent; the `*.py` names on the lines two spaces deeper than it are
    its modules."""
    text = (REPO / "ARCHITECTURE.md").read_text()
    tree = text.split("## Layers", 1)[1].split("```", 2)[1]
    named: set[str] = set()
    folder: list[str] = []
    for line in tree.splitlines():
        indent = len(line) - len(line.lstrip())
        first = line.strip().split("  ", 1)[0]
        if first.endswith("/"):
            folder = folder[: indent // 2] + [first.rstrip("/")]
        elif indent == 2 * len(folder):  # deeper lines continue a description
            named.update("/".join(folder) + "/" + name for name in re.findall(r"\b[a-z_0-9]+\.py\b", line))
    return named


@pytest.mark.unit
def test_architecture_md_draws_the_tree_on_disk() -> None:
    on_disk, drawn = modules_on_disk(), modules_in_architecture_md()
    assert drawn, "ARCHITECTURE.md has no tree under '## Layers'"
    assert sorted(on_disk - drawn) == [], "modules missing from ARCHITECTURE.md's tree"
    assert sorted(drawn - on_disk) == [], "ARCHITECTURE.md names modules that do not exist"


@pytest.mark.unit
def test_only_the_one_redactor_masks_secrets() -> None:
    """Secrets are masked by alphagen_core/operations/redaction.py alone: no other module
    writes the mask itself (it registers its secrets and calls `redact`)."""
    redactor = REPO / "alphagen_core" / "operations" / "redaction.py"
    masking = sorted(
        p.relative_to(REPO).as_posix()
        for package in PACKAGES
        for p in (REPO / package).rglob("*.py")
        if p != redactor and any(isinstance(node, ast.Constant) and isinstance(node.value, str) and "***" in node.value
                                 for node in ast.walk(ast.parse(p.read_text())))
    )
    assert "***" in redactor.read_text()
    assert masking == []


# Dagster's and dbt's packages, and what Dagster keeps private: an underscored module under
# them, or Dagster's internals package (dagster_shared).
PRIVATE_MODULE = re.compile(r"^(?:(?:dagster|dagster_[a-z]+|dbt)(?:\.\w+)*\._\w*|dagster_shared)(?:\.|$)")
SCANNED = (*PACKAGES, "tests", "benchmarks", "scripts")
# The one module that needs them (ARCHITECTURE.md, "One run per range": the numbers and the
# upgrade risk), and its test against Dagster's own storage.
ALLOWED_PRIVATE = {"alphagen_dagster/storage.py", "tests/test_event_log_storage.py"}


def private_modules_named(path: Path) -> list[str]:
    """The private Dagster or dbt modules a file imports, or names in a string (a dagster.yaml
    `module:` written from code, an importlib call)."""
    named = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            named += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            named.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            named.append(node.value)
    return [name for name in named if PRIVATE_MODULE.match(name)]


@pytest.mark.unit
def test_no_code_uses_a_private_dagster_or_dbt_module() -> None:
    found = {
        p.relative_to(REPO).as_posix(): names
        for folder in SCANNED
        for p in sorted((REPO / folder).rglob("*.py"))
        if (names := private_modules_named(p))
    }
    assert sorted(set(found) - ALLOWED_PRIVATE) == [], found
    assert set(found) == ALLOWED_PRIVATE  # each still needs its exemption


@pytest.mark.integration
def test_no_file_cites_a_spec_section_number() -> None:
    """SPEC.md is not in the repository: a section number would point nowhere, and go stale."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    citing = [name for name in tracked.splitlines()
              if (REPO / name).is_file() and re.search(r"§\s*\d|SPEC\s+\d", (REPO / name).read_text(errors="ignore"))]
    assert citing == []
