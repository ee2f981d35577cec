"""The files a host that only serves needs of a model, and their hand-over from the host that built it.

A production host without torch serves with the ONNX export: the graphs and their weights files, the converted
tokenizer, ``tokenizer.json`` (whose checksum the converted tokenizer is checked against), the model's small JSON
configurations and its identity (``faq_model.json``). Not ``model.safetensors`` (470 MB, the set-up's input).
``publish_model`` copies those files to a directory, writes ``serving.json`` (each file's size and SHA-256) and
checks the copy before it takes the destination's place; ``check_model`` checks a copy against that list on the
serving host, with the standard library only (``export.json``'s own checksums of the weights are checked again when
the encoder loads). ``faq-search publish --model`` and ``--check-model`` are their command lines.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from ..errors import ModelUnavailable
from ..files import file_problem, sha256_file
from .onnx_encoder import DATA_FILES, FILES, ONNX_DIR, check_weights

#: The list a published model carries (its files' sizes and SHA-256).
SERVING_LIST = "serving.json"


def serving_files(model_dir: str | os.PathLike) -> list[str]:
    """The paths (relative to ``model_dir``) of what serving with the ONNX export reads."""
    from .tokenizer import PIECES_FILE, PIECES_META

    onnx = [*FILES.values(), *DATA_FILES.values(), "export.json", PIECES_FILE, PIECES_META]
    return [f"{ONNX_DIR}/{name}" for name in onnx] + [
        "tokenizer.json", "config.json", "config_sentence_transformers.json", "sentence_bert_config.json",
        "faq_model.json",
    ]  # fmt: skip


def publish_model(model_dir: str | os.PathLike, to: str | os.PathLike) -> dict:
    """Copy the serving files of an exported model to ``to`` (replaced whole, or left as it was), with their list.

    Returns:
        The list written (``serving.json``'s content).
    Raises:
        ModelUnavailable: the model is not exported (or its weights are not the exported ones), or the copy does not
            check out.
    """
    source, to = Path(model_dir), Path(to)
    for backend in FILES:
        check_weights(source, backend)  # the export is finished and its weights are the ones exported
    missing = [f for f in serving_files(source) if not (source / f).is_file()]
    if missing:
        raise ModelUnavailable(f"{source} lacks {', '.join(missing)}: run `faq-search prepare-model` there first")
    to.parent.mkdir(parents=True, exist_ok=True)
    work = to.with_name(f".{to.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        files = {}
        for name in serving_files(source):
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, work / name)
            files[name] = {"bytes": (source / name).stat().st_size, "sha256": sha256_file(source / name)}
        listing = {"model": str(source.resolve()), "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "files": files}  # fmt: skip
        (work / SERVING_LIST).write_text(json.dumps(listing, indent=2) + "\n", encoding="utf-8")
        problems = check_model(work)
        if problems:
            raise ModelUnavailable(f"the copy in {work} does not check out: {'; '.join(problems)}")
        old = to.with_name(f".{to.name}.old-{os.getpid()}")
        if to.exists():
            to.rename(old)
        work.rename(to)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return listing


def check_model(model_dir: str | os.PathLike) -> list[str]:
    """What is wrong with a published model directory (nothing: an empty list), against its ``serving.json``."""
    model_dir = Path(model_dir)
    try:
        files = json.loads((model_dir / SERVING_LIST).read_text(encoding="utf-8"))["files"]
        expected = {name: (int(f["bytes"]), str(f["sha256"])) for name, f in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [f"{model_dir / SERVING_LIST} is missing or unreadable ({type(exc).__name__}): publish the model again"]
    problems = [f"{name} is not in {SERVING_LIST}" for name in serving_files(model_dir) if name not in expected]
    for name, (size, digest) in expected.items():
        problem = file_problem(model_dir / name, size, digest, made="published")
        if problem:
            problems.append(f"{name} {problem}")
    return problems
