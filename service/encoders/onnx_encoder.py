"""The fast query encoder at run time: a model exported to ONNX, run with ONNX Runtime and the model's tokenizer.

Neither torch, transformers nor sentence-transformers is imported here; the export itself (``onnx_export.py``)
runs at set-up. Layout inside a model directory (written by ``faq-search prepare-model``)::

    onnx/model_emb8.onnx     backend "onnx": fp32 layers with ONNX Runtime's fused BERT kernels; only the
                             word-embedding table (250k x 384, 80 % of the weights) is stored in int8, per row:
                             182 MB of weights instead of 470, cosine to torch's vectors >= 0.9998
    onnx/model_qint8.onnx    backend "onnx-int8": every MatMul in int8 too, per channel (dynamic quantisation):
                             about twice as fast again, but lower R@1 on covid_quebec_fr (docs/performance.md)
    onnx/model_*.weights     each graph's weights, beside it (ONNX external data): ONNX Runtime maps the file
                             instead of copying it, so the int8 word table costs a worker only the pages of the
                             rows its queries touch, and the workers of a host share them through the page cache
    onnx/tokenizer.model     the model's tokenizer.json as a SentencePiece model (28 MB loaded instead of 280),
                             with tokenizer.model.json: see ``tokenizer.py``
    onnx/export.json         what it was exported from (checksum of model.safetensors), with which versions, and
                             each weights file's size and SHA-256 (checked when the encoder loads)
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ModelUnavailable
from .base import PromptsMixin, encoder_threads, model_id_for
from .tokenizer import load_tokenizer

#: Padded tokens (rows × longest row) of one ONNX Runtime run: attention memory grows with rows × length², so 16
#: texts of 512 tokens run as 8 runs of 2 rather than 1 of 16 (about 25 MB of attention each instead of 200), and
#: between two runs (a third of a second at most on one thread) the other requests of a worker get their turn.
MAX_RUN_TOKENS = 1024
ONNX_DIR = "onnx"
FILES = {"onnx": "model_emb8.onnx", "onnx-int8": "model_qint8.onnx"}
#: Each graph's weights file (external data), written by ``onnx_export.export_onnx``.
DATA_FILES = {"onnx": "model_emb8.weights", "onnx-int8": "model_qint8.weights"}


#: The first exporter version that keeps the weights beside the graph (``onnx_export.EXPORTER_VERSION`` >= 6).
WEIGHTS_APART_SINCE = 6
#: Encoders loaded before the server forks its workers (``preload_encoder``), by ``_encoder_key``.
_PRELOADED: dict[tuple, OnnxEmbedder] = {}


def _encoder_key(model_dir: str | os.PathLike, backend: str, threads: int) -> tuple:
    """What an encoder is made of, as it is now: the directory, backend and threads, and the size and modification
    time of each of its files (a file changed since the master loaded it makes another key)."""
    from .tokenizer import PIECES_FILE, PIECES_META

    model_dir = Path(model_dir).resolve()
    onnx = model_dir / ONNX_DIR
    files = [onnx / FILES.get(backend, "?"), onnx / DATA_FILES.get(backend, "?"), onnx / "export.json",
             onnx / PIECES_FILE, onnx / PIECES_META, model_dir / "tokenizer.json", model_dir / "config.json",
             model_dir / "config_sentence_transformers.json", model_dir / "sentence_bert_config.json"]  # fmt: skip
    stats = []
    for path in files:
        try:
            stat = path.stat()
            stats.append((path.name, stat.st_size, stat.st_mtime_ns))
        except OSError:
            stats.append((path.name, None, None))
    return str(model_dir), backend, threads, tuple(stats)


def preload_encoder(model_dir: str | os.PathLike, backend: str = "onnx") -> bool:
    """Load the encoder now, in the process that will fork the workers (the gunicorn master), for them to share.

    The ONNX Runtime session (about 94 MB of layer weights it keeps in memory) and the tokenizer are then one copy
    for every worker of the host, shared copy-on-write: running the model only reads them. Only for an encoder of
    one thread (the default of a gunicorn worker on a host with as many workers as cores): ONNX Runtime then makes
    no thread pool, so nothing is lost at the fork; with more threads each worker loads its own after the fork.
    Returns whether it was loaded.
    """
    if (encoder_threads() or 1) != 1:
        return False
    _PRELOADED.clear()  # one model at a time: a reload of the master replaces it
    _PRELOADED[_encoder_key(model_dir, backend, 1)] = OnnxEmbedder(model_dir, backend, threads=1)
    return True


def onnx_embedder(model_dir: str | os.PathLike, backend: str = "onnx", threads: int | None = None) -> OnnxEmbedder:
    """The master's encoder when it preloaded this one (same files, same thread count), else a new one."""
    threads = threads or encoder_threads() or (os.cpu_count() or 1)
    found = _PRELOADED.get(_encoder_key(model_dir, backend, threads))
    if found is None and _PRELOADED:
        logging.getLogger(__name__).info(
            "the encoder the master preloaded is for other files or threads: loading our own (%s, %s, %d threads)",
            model_dir, backend, threads,
        )  # fmt: skip
    return found or OnnxEmbedder(model_dir, backend, threads=threads)


def check_weights(model_dir: Path, backend: str) -> Path | None:
    """The backend's weights file, after checking it against ``export.json`` (None for an export from before the
    weights were kept apart, which has them inside its graph file).

    Raises:
        ModelUnavailable: ``export.json`` missing or unreadable (an export not finished), or the weights file
            missing, truncated or not the exported one (size or SHA-256), saying what to run.
    """
    from ..files import file_problem

    redo = f"export it again with `.venv/bin/faq-search prepare-model --onnx-only {model_dir} --force`"
    if (model_dir / "serving.json").is_file():  # a published copy: made on the build host, not here
        redo = f"publish it again from the build host (`faq-search publish --model <model dir> --to {model_dir}`)"
    marker = model_dir / ONNX_DIR / "export.json"
    try:
        info = json.loads(marker.read_text())
        if int(info.get("exporter_version", 0)) < WEIGHTS_APART_SINCE:
            logging.getLogger(__name__).warning(
                "%s is an export from before the weights were kept apart: each worker holds its own copy of them "
                "(%s to share them)", model_dir, redo,
            )  # fmt: skip
            return None
        expected = info["data"][backend]
        path = model_dir / ONNX_DIR / expected["file"]
        size, digest = int(expected["bytes"]), str(expected["sha256"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelUnavailable(f"{marker} is missing or unreadable ({type(exc).__name__}): {redo}") from None
    problem = file_problem(path, size, digest)
    if problem:
        raise ModelUnavailable(f"{path} {problem}: {redo}")
    return path


class OnnxEmbedder(PromptsMixin):
    """The ``Embedder`` protocol over an exported model: ONNX Runtime + the model's tokenizer (``tokenizer.py``)."""

    def __init__(self, model_dir: str | os.PathLike, backend: str = "onnx-int8", threads: int | None = None):
        import onnxruntime as ort

        if backend not in FILES:
            raise ValueError(f"backend must be one of {sorted(FILES)}, not {backend!r}")
        model_dir = Path(model_dir)
        path = model_dir / ONNX_DIR / FILES[backend]
        if not path.is_file():
            raise ModelUnavailable(
                f"{path} does not exist: run `faq-search prepare-model --out {model_dir}` "
                f"(or `make model`) to export it, or use the torch backend"
            )
        if (model_dir / "serving.json").is_file():  # a published copy (serving_files.py): every file as published
            from .serving_files import check_model

            problems = check_model(model_dir, backend)
            if problems:
                raise ModelUnavailable(
                    f"{model_dir} is not the model as published ({'; '.join(problems[:3])}): publish it again from "
                    f"the build host (`faq-search publish --model <model dir> --to {model_dir}`)"
                )
        self.data_path = check_weights(model_dir, backend)
        try:
            st_config = json.loads((model_dir / "config_sentence_transformers.json").read_text())
            bert_config = json.loads((model_dir / "sentence_bert_config.json").read_text())
            config = json.loads((model_dir / "config.json").read_text())
            self.max_seq_length = int(bert_config.get("max_seq_length", 512))
            # The master's copy when it preloaded this one (shared with the other workers), else one of our own.
            self.tokenizer = load_tokenizer(model_dir, self.max_seq_length)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads or encoder_threads() or (os.cpu_count() or 1)
            options.inter_op_num_threads = 1
            # No memory arena: with one, a burst of long batches grew a worker from 0.6 to 3.2 GB and it never
            # shrank back; without, memory returns after the burst, at no measurable cost on a short query.
            options.enable_cpu_mem_arena = False
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except ModelUnavailable:
            raise
        except Exception as exc:  # OSError, ValueError, onnxruntime's own errors
            raise ModelUnavailable(f"cannot load the ONNX model {path}: {exc}") from exc
        self.backend, self.path = backend, path
        self.model_id = model_id_for(str(model_dir))
        self.dimension = int(config["hidden_size"])
        self.prompts = dict(st_config.get("prompts") or {})
        self.pad_id = int(config.get("pad_token_id") or 0)

    def encoder_info(self) -> dict:
        """What the manifest records about the encoder that made the vectors."""
        return {"backend": self.backend, "file": f"{ONNX_DIR}/{FILES[self.backend]}"}

    def count_tokens(self, texts: Sequence[str], kind: str = "query") -> list[int]:
        """Tokens the model reads for each text (prompt included, at most ``max_seq_length``): what encoding costs."""
        return [len(ids) for ids in self._token_ids(texts, kind)]

    def _token_ids(self, texts: Sequence[str], kind: str) -> list[list[int]]:
        """The tokenizer's ids of ``texts`` with the prompt for ``kind`` (stripped, truncated)."""
        prompt = self.prompt_for(kind)
        return self.tokenizer.encode_batch([prompt + t.strip() for t in texts])

    def encode(
        self, texts: Sequence[str], kind: str = "query", batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        """Embed texts with the prompt for ``kind``; batches are made of texts of similar length (less padding),
        of at most ``batch_size`` texts and ``MAX_RUN_TOKENS`` padded tokens (bounded memory per run)."""
        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', not {kind!r}")
        token_ids = self._token_ids(texts, kind)
        order = [int(i) for i in np.argsort([len(e) for e in token_ids], kind="stable")]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        start = 0
        while start < len(order):
            # Longest last: grow the run while its padded size (rows × longest) stays within the bound.
            end = start + 1
            while end < len(order) and end - start < batch_size:
                if (end - start + 1) * len(token_ids[order[end]]) > MAX_RUN_TOKENS:
                    break
                end += 1
            picked = order[start:end]
            start = end
            width = max(len(token_ids[i]) for i in picked)
            ids = np.full((len(picked), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(picked), width), dtype=np.int64)
            for row, i in enumerate(picked):
                n = len(token_ids[i])
                ids[row, :n] = token_ids[i]
                mask[row, :n] = 1
            out[picked] = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            if start < len(order):
                # Between runs, let the other requests of this worker go on: a gevent worker's loop polls for I/O
                # during this sleep (sleep(0) would resume this greenlet first); a thread just lets go of the GIL.
                time.sleep(0.0002)
        return out
