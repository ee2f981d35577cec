"""The ONNX encoders: the same vectors as sentence-transformers on torch, batching that changes nothing, an export
that is redone only when the weights change, and a service that encodes queries with the index's own encoder."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import CHORUS_CORPUS, MINI_CORPUS, MODEL_DIR, PARAPHRASES, assert_error, linked_model_copy

from service.corpus import load_corpus
from service.encoders.loading import load_embedder, resolve_backend
from service.encoders.onnx_encoder import DATA_FILES, FILES, ONNX_DIR, OnnxEmbedder
from service.encoders.onnx_export import EXPORT_MARKER, export_onnx, is_exported
from service.errors import ModelUnavailable
from service.http.app import create_app
from service.indexing.build import build_index

QUERIES = [q for q, _ in PARAPHRASES]


def _passages() -> list[str]:
    return [f"{e.question}\n{e.answer}" for e in load_corpus(CHORUS_CORPUS)]


@pytest.fixture(scope="module")
def onnx_embedders():
    return {backend: OnnxEmbedder(MODEL_DIR, backend) for backend in FILES}


# ---- fast: no model needed ----


def test_missing_export_is_a_clear_model_error(tmp_path):
    with pytest.raises(ModelUnavailable, match="faq-search prepare-model --out"):
        OnnxEmbedder(tmp_path, "onnx")
    with pytest.raises(ValueError, match="backend must be"):
        OnnxEmbedder(tmp_path, "tensorrt")


def test_auto_backend_needs_an_export(tmp_path):
    assert resolve_backend(str(tmp_path), "auto") == "torch"
    assert resolve_backend("intfloat/multilingual-e5-small", "auto") == "torch"
    assert resolve_backend(str(tmp_path), "onnx-int8") == "onnx-int8"
    (tmp_path / ONNX_DIR).mkdir()
    (tmp_path / ONNX_DIR / FILES["onnx"]).write_bytes(b"")
    assert resolve_backend(str(tmp_path), "auto") == "onnx"
    with pytest.raises(ValueError, match="backend must be"):
        resolve_backend(str(tmp_path), "cuda")


@pytest.mark.parametrize("backend", ["auto", "onnx", "torch"])
def test_a_missing_model_directory_is_named_whatever_the_backend(tmp_path, backend):
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_embedder(str(tmp_path / "nowhere"), backend)


def test_onnx_backend_refuses_a_hub_name():
    with pytest.raises(ModelUnavailable, match="local model directory"):
        load_embedder("intfloat/multilingual-e5-small", "onnx")


def test_export_refuses_a_directory_without_weights(tmp_path):
    with pytest.raises(ModelUnavailable, match="model.safetensors"):
        export_onnx(tmp_path)


# ---- slow: the real exported model ----


@pytest.mark.slow
def test_default_encoder_is_the_fp32_onnx_export(real_embedder):
    assert isinstance(real_embedder, OnnxEmbedder)
    assert real_embedder.encoder_info() == {"backend": "onnx", "file": f"{ONNX_DIR}/{FILES['onnx']}"}
    assert real_embedder.prompts["query"] == "query: " and real_embedder.dimension == 384


@pytest.mark.slow
@pytest.mark.parametrize("backend,floor", [("onnx", 0.9995), ("onnx-int8", 0.98)])
def test_vectors_match_torch(onnx_embedders, torch_embedder, backend, floor):
    ours = onnx_embedders[backend]
    for kind, texts in (("query", QUERIES), ("passage", _passages())):
        got, want = ours.encode(texts, kind=kind), torch_embedder.encode(texts, kind=kind)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
        cosines = np.sum(got * want, axis=1)
        print(f"\n{backend} {kind}: cosine to torch min {cosines.min():.5f} mean {cosines.mean():.5f}")
        assert cosines.min() >= floor


@pytest.mark.slow
def test_padding_in_a_batch_changes_nothing(onnx_embedders):
    encoder = onnx_embedders["onnx"]
    texts = ["TVA", QUERIES[0], _passages()[0], "  mot de passe oublié  "]
    together = encoder.encode(texts, kind="passage", batch_size=4)
    alone = np.stack([encoder.encode([t], kind="passage")[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=2e-5)
    assert encoder.encode([], kind="query").shape == (0, 384)


@pytest.mark.slow
def test_export_is_up_to_date_and_not_redone():
    files = [MODEL_DIR / ONNX_DIR / name for name in (*FILES.values(), *DATA_FILES.values(), EXPORT_MARKER)]
    before = [f.stat().st_mtime_ns for f in files]
    assert is_exported(MODEL_DIR)
    assert export_onnx(MODEL_DIR) == MODEL_DIR / ONNX_DIR
    assert [f.stat().st_mtime_ns for f in files] == before
    marker = json.loads((MODEL_DIR / ONNX_DIR / EXPORT_MARKER).read_text())
    assert marker["fused"]["nodes"]["Attention"] == 12  # one fused attention kernel per layer


@pytest.mark.slow
def test_changed_weights_make_the_export_stale(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(MODEL_DIR, copy)
    assert is_exported(copy)
    with open(copy / "model.safetensors", "r+b") as fh:  # any change to the weights
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    assert not is_exported(copy)


@pytest.mark.slow
def test_index_records_its_encoder_and_the_service_keeps_to_it(tmp_path, onnx_embedders):
    out = tmp_path / "index"
    manifest = build_index(MINI_CORPUS, out, onnx_embedders["onnx"], show_progress=False)
    assert manifest.model.encoder.to_dict() == {"backend": "onnx", "file": "onnx/model_emb8.onnx"}
    served = create_app({"TESTING": True, "FAQ_INDEX": str(out), "FAQ_MODEL": str(MODEL_DIR)})
    assert isinstance(served.extensions["faqs"].default.current_engine.embedder, OnnxEmbedder)
    assert served.test_client().post("/search", json={"query": "mot de passe"}).status_code == 200
    for backend, code in (("torch", "index_model_mismatch"), ("onnx-int8", "index_model_mismatch")):
        app = create_app({"TESTING": True, "FAQ_INDEX": str(out), "FAQ_MODEL": str(MODEL_DIR), "FAQ_BACKEND": backend})
        assert app.extensions["faqs"].default.current_engine is None
        err = assert_error(app.test_client().post("/search", json={"query": "mot de passe"}), 503, code)
        assert backend in err["message"]
    # A backend that does not exist is refused with the settings, before anything loads.
    from service.settings import SettingsError

    with pytest.raises(SettingsError, match="FAQ_BACKEND='gpu' is not valid"):
        create_app({"TESTING": True, "FAQ_INDEX": str(out), "FAQ_MODEL": str(MODEL_DIR), "FAQ_BACKEND": "gpu"})


def _model_copy(tmp_path, weights: bytes | None):
    """The converted model with every file linked, except the fp32 export's weights: ``weights`` (None: absent)."""
    copy = linked_model_copy(tmp_path, without="model_emb8.weights")
    if weights is not None:
        (copy / ONNX_DIR / "model_emb8.weights").write_bytes(weights)
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["missing", "truncated", "changed"])
def test_a_missing_truncated_or_changed_weights_file_is_refused_with_what_to_run(tmp_path, damage):
    """The weights sit beside the graph (ONNX external data, mapped and shared by the workers): checked against
    export.json's size and SHA-256 before a session is made of them."""
    from service.errors import ModelUnavailable

    original = (MODEL_DIR / ONNX_DIR / "model_emb8.weights").read_bytes()
    changed = original[:-1] + bytes([original[-1] ^ 1])
    weights = {"missing": None, "truncated": original[: len(original) // 2], "changed": changed}[damage]
    copy = _model_copy(tmp_path, weights)
    with pytest.raises(ModelUnavailable, match="prepare-model --onnx-only .* --force"):
        OnnxEmbedder(copy, "onnx")
    assert not is_exported(copy) or damage == "changed", "a damaged export is exported again, not kept"


@pytest.mark.slow
def test_a_serving_worker_needs_only_the_runtime_dependencies(real_index_dir):
    """What a gunicorn worker imports to serve (``service.http.wsgi``: the app, the model, the index) comes from the
    project's runtime dependencies (``pip install .``, no extra): never torch, transformers or the set-up's other
    libraries (docs/performance.md measures that install)."""
    import importlib.metadata
    import os
    import subprocess
    import sys

    from packaging.requirements import Requirement

    code = "import sys, json, service.http.wsgi\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    env = {**os.environ, "FAQ_INDEX": str(real_index_dir), "FAQ_MODEL": str(MODEL_DIR), "FAQ_LOG_LEVEL": "warning"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    modules = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not modules & {"torch", "transformers", "sentence_transformers", "onnx", "sklearn"}

    def runtime(dist: str, seen: set[str]) -> set[str]:
        """A distribution and what it requires, without extras, transitively (names normalised)."""
        name = dist.lower().replace("_", "-")
        if name in seen:
            return seen
        seen.add(name)
        for text in importlib.metadata.requires(dist) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                try:
                    runtime(requirement.name, seen)
                except importlib.metadata.PackageNotFoundError:  # not for this platform or Python
                    pass
        return seen

    # Imported when present, not needed: numpy.f2py tries charset_normalizer; every venv's .pth loads setuptools'
    # _distutils_hack.
    allowed = runtime("faq-search", set()) | {"charset-normalizer", "setuptools"}
    owners = importlib.metadata.packages_distributions()
    used = {d.lower().replace("_", "-") for m in modules for d in owners.get(m, [])}
    assert used <= allowed, f"imported while serving, but not a runtime dependency: {sorted(used - allowed)}"


@pytest.mark.slow
def test_an_export_without_its_marker_is_refused_and_one_from_before_serves(tmp_path, caplog):
    """export.json missing (an export not finished) is refused; one from before the weights were kept apart (no
    weights file) still serves, with a warning."""
    from service.errors import ModelUnavailable

    copy = _model_copy(tmp_path, (MODEL_DIR / ONNX_DIR / "model_emb8.weights").read_bytes())
    (copy / ONNX_DIR / EXPORT_MARKER).unlink()
    with pytest.raises(ModelUnavailable, match="export.json is missing"):
        OnnxEmbedder(copy, "onnx")
    older = json.loads((MODEL_DIR / ONNX_DIR / EXPORT_MARKER).read_text())
    older["exporter_version"] = 5
    del older["data"]
    (copy / ONNX_DIR / EXPORT_MARKER).write_text(json.dumps(older))
    with caplog.at_level("WARNING"):
        assert OnnxEmbedder(copy, "onnx").data_path is None
    assert "before the weights were kept apart" in caplog.text


@pytest.mark.slow
def test_the_encoder_takes_the_tokenizer_the_master_preloaded_and_only_that_one(tmp_path):
    from service.encoders import tokenizer

    try:
        assert tokenizer.preload_tokenizer(MODEL_DIR)
        shared = next(iter(tokenizer._PRELOADED.values()))
        assert isinstance(shared, tokenizer.PieceTokenizer)  # the export's SentencePiece model, not tokenizer.json
        assert OnnxEmbedder(MODEL_DIR, "onnx").tokenizer is shared
        copy = _model_copy(tmp_path, (MODEL_DIR / ONNX_DIR / "model_emb8.weights").read_bytes())
        pieces = copy / ONNX_DIR / tokenizer.PIECES_FILE
        pieces.unlink()
        pieces.write_bytes((MODEL_DIR / ONNX_DIR / tokenizer.PIECES_FILE).read_bytes())
        assert OnnxEmbedder(copy, "onnx").tokenizer is not shared  # another file
    finally:
        tokenizer._PRELOADED.clear()


@pytest.mark.slow
def test_the_encoder_the_master_preloaded_is_taken_only_for_one_thread_and_the_same_files(tmp_path, monkeypatch):
    """gunicorn's master loads the ONNX encoder before forking (one thread: no thread pool to lose at the fork); a
    worker takes it only when its thread count and every file of the model are those the master loaded."""
    from service.encoders import onnx_encoder
    from service.encoders.loading import load_embedder

    copy = _model_copy(tmp_path, (MODEL_DIR / ONNX_DIR / "model_emb8.weights").read_bytes())
    try:
        monkeypatch.setenv("FAQ_ENCODER_THREADS", "2")
        assert not onnx_encoder.preload_encoder(copy, "onnx")  # two threads: each worker loads its own
        monkeypatch.setenv("FAQ_ENCODER_THREADS", "1")
        assert onnx_encoder.preload_encoder(copy, "onnx")
        shared = next(iter(onnx_encoder._PRELOADED.values()))
        assert load_embedder(str(copy), "onnx") is shared
        assert load_embedder(str(copy), "onnx-int8") is not shared  # another backend
        assert load_embedder(str(MODEL_DIR), "onnx") is not shared  # another directory
        monkeypatch.setenv("FAQ_ENCODER_THREADS", "2")
        assert load_embedder(str(copy), "onnx") is not shared  # another thread count
        monkeypatch.setenv("FAQ_ENCODER_THREADS", "1")
        marker = copy / ONNX_DIR / EXPORT_MARKER
        content = marker.read_bytes()
        marker.unlink()  # a symlink to the real model's: replaced by a file of its own, written now
        marker.write_bytes(content)
        assert load_embedder(str(copy), "onnx") is not shared  # a file changed since
    finally:
        onnx_encoder._PRELOADED.clear()


@pytest.mark.slow
def test_a_worker_forked_after_the_preload_encodes_what_the_master_does(monkeypatch):
    """The master's encoder used in a forked child (as a gunicorn worker does): the same vectors, and no hang."""
    from service.encoders import onnx_encoder

    monkeypatch.setenv("FAQ_ENCODER_THREADS", "1")
    try:
        assert onnx_encoder.preload_encoder(MODEL_DIR, "onnx")
        encoder = next(iter(onnx_encoder._PRELOADED.values()))
        texts = [q for q, _ in PARAPHRASES[:8]]
        expected = encoder.encode(texts)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: encode, send the vectors, leave without running the parent's cleanup
            try:
                os.write(write, encoder.encode(texts).astype(np.float32).tobytes())
            finally:
                os._exit(0)
        os.close(write)
        data = b""
        while chunk := os.read(read, 1 << 16):
            data += chunk
        os.close(read)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        got = np.frombuffer(data, dtype=np.float32).reshape(expected.shape)
        assert np.allclose(got, expected, atol=1e-6)
    finally:
        onnx_encoder._PRELOADED.clear()
