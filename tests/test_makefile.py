"""The Makefile honours the configuration variables: the environment's FAQ_* values, its own only as defaults."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import MINI_CORPUS, ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def _dry_run(target: str, **env: str) -> str:
    """What `make -n TARGET` would run with these variables in the environment (nothing is run)."""
    # Run as a top-level make even when the tests themselves run under one (`make test` sets MAKELEVEL and
    # MAKEFLAGS, and a sub-make prints "Entering directory" lines around what it would run).
    inherited = ("HOST", "PORT", "MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAQ_") and k not in inherited}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_run_builds_and_serves_what_the_environment_names(tmp_path):
    index = tmp_path / "my-index"
    out = _dry_run(
        "run",
        FAQ_CORPUS=str(MINI_CORPUS),
        FAQ_INDEX=str(index),
        FAQ_HOST="127.0.0.2",
        FAQ_PORT="8021",
        FAQ_WATCH_SECONDS="0",
    )
    assert f"faq-search build --corpus {MINI_CORPUS} --out {index}" in out  # stale (absent): built first
    assert f"FAQ_HOST=127.0.0.2 FAQ_PORT=8021 FAQ_INDEX={index} FAQ_WATCH_SECONDS=0" in out
    # The production server as `faq-search serve` starts it (gunicorn with settings.GUNICORN_ARGS: one command line).
    assert out.rstrip().endswith(f"FAQ_CORPUS={MINI_CORPUS} .venv/bin/faq-search serve")


def test_the_makefile_defaults_and_the_older_names(tmp_path):
    default = _dry_run("run")
    assert "FAQ_HOST=127.0.0.1 FAQ_PORT=8000 FAQ_INDEX=index FAQ_WATCH_SECONDS=5" in default
    older = _dry_run("run", PORT="8031", HOST="127.0.0.3")
    assert "FAQ_HOST=127.0.0.3 FAQ_PORT=8031" in older


def test_index_force_builds_the_named_corpus(tmp_path):
    out = _dry_run("index-force", FAQ_CORPUS=str(MINI_CORPUS), FAQ_INDEX=str(tmp_path / "i"))
    assert f"--corpus {MINI_CORPUS} --out {tmp_path / 'i'}" in out


def _pins(path) -> set[str]:
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    return {line.split("==")[0].strip().lower() for line in lines if "==" in line and not line.startswith("#")}


def test_make_run_installs_what_serving_and_building_need_and_make_test_the_rest():
    run = _dry_run_all("run")
    assert "-r requirements.txt" in run and "requirements-dev.txt" not in run
    # A pip an interrupted self-upgrade left half-replaced is put back before anything else is installed.
    assert run.index("ensurepip") < run.index("--upgrade pip") < run.index("torch==")
    for target in ("test", "test-fast", "lint"):
        assert "-r requirements-dev.txt" in _dry_run_all(target), target
    runtime = _pins("requirements.txt")
    assert {"torch", "sentence-transformers", "faiss-cpu", "flask", "numpy", "pytest", "mcp"} <= runtime
    moved = {"playwright", "schemathesis", "hypothesis", "datasets", "accelerate", "ir-measures", "ruff"}
    assert not moved & runtime
    dev = _pins("requirements-dev.txt") | _pins("requirements-eval.txt") | _pins("requirements-finetune.txt")
    assert moved <= dev


def _dry_run_all(target: str) -> str:
    """``make -n -B TARGET``: every recipe the target would run from nothing (a fresh clone), none run."""
    inherited = ("HOST", "PORT", "MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAQ_") and k not in inherited}
    done = subprocess.run(["make", "--no-print-directory", "-n", "-B", target], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_missing_tool_group_says_what_to_install(monkeypatch, capsys):
    import importlib.util

    from service.cli import require_extra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a))
    with pytest.raises(SystemExit) as ended:
        require_extra("finetune", "fine-tuning")
    assert ended.value.code == 2
    said = capsys.readouterr().err
    assert "datasets" in said and "pip install -r requirements-finetune.txt" in said
    require_extra("eval", "evaluate")  # installed here: nothing said, no exit
