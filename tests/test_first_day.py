"""The rough edges of a first day with the service (issue 28's list): what a new user sees in a terminal."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

from service.cli import COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_commands_help_reads_as_text_not_restructured_text(command):
    code = f"import sys; from service.cli import main; sys.exit(main([{command!r}, '--help']))"  # as faq-search
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "``" not in done.stdout and "usage:" in done.stdout


def test_importing_the_index_store_logs_nothing_about_faiss_builds():
    """faiss logs which SIMD build it tried ("Could not load library with AVX512 support") at INFO as it is
    imported: a server or a command that logs at INFO must not show it."""
    code = "import logging; logging.basicConfig(level=logging.INFO); import service.indexing.store"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "faiss.loader" not in done.stderr and "AVX" not in done.stderr, done.stderr


def test_modal_verbs_are_no_key_words():
    """ "peux" was listed as a key word the nearest entry lacks (`reason.terms`): modal verbs say nothing of a topic."""
    from service.search.lexical import FrenchAnalyzer

    words = [word for _, word in FrenchAnalyzer().words("est-ce que je peux, vous pouvez, je veux, je voudrais payer")]
    assert words == ["payer"]
