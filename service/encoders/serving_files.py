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

import glob
import json
import os
import re
import shutil
import time
from pathlib import Path

from ..errors import ModelUnavailable
from ..files import exclusive_lock, file_problem, sha256_file
from ..processes import alive
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
        ModelUnavailable: the model is not exported, or does not load and encode; ``to`` is not a place to publish
            to (the model itself, a directory inside it or holding it, or something that is not a published model);
            or the copy does not check out.
    """
    source, to = Path(model_dir), Path(to)
    _check_destination(source, to)
    _check_source(source)
    to.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(to.parent / f".{to.name}.lock"):  # one publish at a time into ``to``
        _remove_leftovers(to)
        work = to.with_name(f".{to.name}.tmp-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        try:
            files = {}
            for name in serving_files(source):
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, work / name)
                files[name] = {"bytes": (source / name).stat().st_size, "sha256": sha256_file(source / name)}
            listing = {"model": str(source.resolve()),
                       "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files}  # fmt: skip
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


def _check_destination(source: Path, to: Path) -> None:
    """ModelUnavailable unless ``to`` may be replaced by a published copy of ``source``."""
    if not to.name or to.name in (".", ".."):
        raise ModelUnavailable(f"{str(to)!r} is not a directory to publish into: name one, e.g. /srv/faq/model")
    real_source, real_to = source.resolve(), to.resolve()
    if real_to == real_source or real_source in real_to.parents or real_to in real_source.parents:
        raise ModelUnavailable(f"{to} is the model {source}, inside it or holds it: publish somewhere else")
    if to.is_symlink() or (to.exists() and not to.is_dir()):
        raise ModelUnavailable(f"{to} exists and is not a directory: publish into a directory")
    if to.exists() and any(to.iterdir()) and not (to / SERVING_LIST).is_file():
        raise ModelUnavailable(
            f"{to} holds something that is not a published model (no {SERVING_LIST}): publish into an empty or new "
            "directory, or one a previous publish made"
        )


def _check_source(source: Path) -> None:
    """ModelUnavailable unless ``source`` is an export that loads and encodes, each file as its own records say."""
    from .onnx_encoder import OnnxEmbedder

    for backend in FILES:
        if check_weights(source, backend) is None:  # an export from before the weights were kept apart
            raise ModelUnavailable(f"{source}'s export is too old to publish: export it again (prepare-model --force)")
    missing = [f for f in serving_files(source) if not (source / f).is_file()]
    if missing:
        raise ModelUnavailable(f"{source} lacks {', '.join(missing)}: run `faq-search prepare-model` there first")
    for backend in FILES:  # the graphs, weights, tokenizer and configuration as the service will read them
        vector = OnnxEmbedder(source, backend, threads=1).encode(["query: contrôle"], kind="query")
        if not (vector.shape[0] == 1 and bool((abs(vector) <= 1.0 + 1e-3).all()) and abs(vector).sum() > 0):
            raise ModelUnavailable(f"{source}'s {backend} export does not encode a sentence to a unit vector")


#: What publishing leaves beside a destination when it is killed: its work directory and the copy it replaced.
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)$")


def _remove_leftovers(to: Path) -> None:
    """Remove the work directories and replaced copies a killed publish into ``to`` left, once its process is gone."""
    for leftover in to.parent.glob(f".{glob.escape(to.name)}.*-*"):
        match = _LEFTOVER.match(leftover.name)
        if match is None or match["name"] != to.name or alive(int(match["pid"])):
            continue
        if (leftover / SERVING_LIST).is_file() or (leftover / ONNX_DIR).is_dir():  # made by a publish
            shutil.rmtree(leftover, ignore_errors=True)


def check_model(model_dir: str | os.PathLike, backend: str | None = None) -> list[str]:
    """What is wrong with a published model directory (nothing: an empty list), against its ``serving.json``;
    with ``backend``, only the files serving that backend reads, but for its weights file, which the encoder's
    ``check_weights`` hashes anyway against ``export.json`` (itself checked here)."""
    model_dir = Path(model_dir)
    try:
        files = json.loads((model_dir / SERVING_LIST).read_text(encoding="utf-8"))["files"]
        expected = {}
        for name, f in files.items():
            size, digest = f["bytes"], f["sha256"]
            if not (type(size) is int and size >= 0 and isinstance(digest, str) and len(digest) == 64):
                raise ValueError(f"{name}: bytes must be a whole number and sha256 64 hex digits")
            expected[name] = (size, digest)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        return [f"{model_dir / SERVING_LIST} is missing or unreadable ({type(exc).__name__}): publish the model again"]
    wanted = serving_files(model_dir)
    if backend is not None:
        others = {f"{ONNX_DIR}/{f[b]}" for f in (FILES, DATA_FILES) for b in f if b != backend}
        others.add(f"{ONNX_DIR}/{DATA_FILES[backend]}")
        wanted = [name for name in wanted if name not in others]
    problems = [
        f"{SERVING_LIST} lists {name!r}, which is no serving file"
        for name in expected
        if name not in serving_files(model_dir)
    ]  # fmt: skip  (never read: a list may not point outside the directory)
    for name in wanted:
        if name not in expected:
            problems.append(f"{name} is not in {SERVING_LIST}")
            continue
        problem = file_problem(model_dir / name, *expected[name], made="published")
        if problem:
            problems.append(f"{name} {problem}")
    return problems
