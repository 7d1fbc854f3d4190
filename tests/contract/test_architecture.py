"""Architecture invariants that can be checked from outside the code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_CORE = {"pyo3", "tokio", "hyper", "reqwest", "axum", "mio"}


@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo (installed by make test)")
def test_the_core_depends_on_no_python_runtime_or_network_crate() -> None:
    tree = subprocess.run(
        ["cargo", "tree", "-p", "omnicloud-core", "-e", "normal", "--prefix", "none", "--offline"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    crates = {line.split(" ")[0] for line in tree.splitlines() if line.strip()}
    assert "omnicloud-core" in crates and "rusqlite" in crates
    assert crates & FORBIDDEN_IN_CORE == set()


def test_every_capability_module_has_a_module_doc() -> None:
    sources = sorted((ROOT / "omnicloud-core" / "src").rglob("*.rs"))
    assert sources
    for source in sources:
        first = source.read_text().lstrip().splitlines()[0]
        assert first.startswith("//!"), f"{source.relative_to(ROOT)} lacks a module doc"
