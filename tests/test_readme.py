"""The README's "Your own FAQ, step by step" runs as written: its shell blocks, in order, in an empty folder, with
the real model (slow tier). Only the port changes (8021 may be taken on a CI machine)."""

from __future__ import annotations

import os
import re
import socket
import subprocess

import pytest
from conftest import ROOT, free_port

pytestmark = pytest.mark.slow

SECTION = "## Your own FAQ, step by step"


def quick_start_blocks() -> list[str]:
    """The ```sh blocks of the README's quick start for one's own FAQ, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    return re.findall(r"```sh\n(.*?)```", readme[start : end if end != -1 else None], flags=re.DOTALL)


def test_the_quick_start_has_every_step():
    script = "\n".join(quick_start_blocks())
    for step in ("--check", "faq-search build", "faq-search serve", "--port 8021", ">> my-faq/faq.jsonl", "evaluate"):
        assert step in script, step


def test_the_quick_start_runs_as_written(tmp_path):
    port, second = free_port(), free_port()
    script = "\n".join(quick_start_blocks()).replace("8021", str(port)).replace("8022", str(second))
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "index").symlink_to(ROOT / "index")  # the repository's folder has the default FAQ's index
    # The harness's own lines: stop on the first failing command, and never leave the server behind.
    harness = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAQ_")}
    done = subprocess.run(
        ["bash", "-c", harness + script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert '"faq_id":"horaires"' in out.replace(" ", ""), out[-2000:]
    assert "3 entries" in out
    assert "R@1" in out and "default" in out, out[-2000:]
    assert (tmp_path / "my-faq" / "index" / "current").exists()
    # Two FAQs in one server: both listed, and the question about Chorus Pro answered from it across both.
    assert '"name":"mairie"' in out.replace(" ", "") and '"name":"chorus-pro"' in out.replace(" ", ""), out[-2000:]
    assert '"faq":"chorus-pro"' in out.replace(" ", "") and '"faq_id":"chorus-pro-2"' in out.replace(" ", "")
    for used in (port, second):
        with socket.socket() as s:  # the servers are gone
            assert s.connect_ex(("127.0.0.1", used)) != 0
