"""The index format: FAISS against brute force, manifest checks, atomic publication, corruption detection."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import MINI_CORPUS

from service.corpus import CorpusError
from service.errors import IndexMismatch, IndexUnavailable
from service.indexing import store as index_store
from service.indexing.build import build_index
from service.indexing.scoring import Scoring
from service.indexing.store import VectorIndex, load_index, resolve


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("n,d,k", [(1, 8, 1), (50, 16, 5), (1000, 64, 10), (300, 384, 50)])
def test_search_matches_numpy_brute_force(n, d, k):
    rng = np.random.default_rng(n * d + k)
    base, queries = _unit(rng, n, d), _unit(rng, 20, d)
    scores, ids = VectorIndex.from_vectors(base).search(queries, k)
    exact = queries @ base.T
    expected_ids = np.argsort(-exact, axis=1, kind="stable")[:, : min(k, n)]
    expected_scores = np.take_along_axis(exact, expected_ids, axis=1)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    # ids may differ only where two scores tie
    assert np.all((ids == expected_ids) | np.isclose(np.take_along_axis(exact, ids, axis=1), expected_scores))
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_unnormalised_or_empty_vectors_are_refused():
    with pytest.raises(ValueError, match="L2-normalised"):
        VectorIndex.from_vectors(np.ones((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        VectorIndex.from_vectors(np.zeros((0, 4), dtype=np.float32))


def test_round_trip_and_manifest(make_index, fake_embedder):
    out = make_index()
    stored = load_index(out)
    m = stored.manifest.to_dict()
    assert m["format_version"] == index_store.FORMAT_VERSION
    assert m["model"] == {
        "name": fake_embedder.model_id,
        "dimension": 384,
        "prompts": {"query": "", "passage": ""},
        "encoder": {"backend": "custom", "file": None},
        "weights_sha256": None,
    }  # an embedder object, not a named backend
    assert m["metric"] == "inner_product" and m["normalized"] is True
    assert m["counts"] == {
        "entries": 4,
        "passages": 5,
        "vectors": 10,
        "vectors_by_kind": {"question": 4, "alt_question": 1, "passage": 5},
    }
    assert m["scoring"] == Scoring().to_dict()
    assert m["corpus"]["file"] == "mini_faq.jsonl" and len(m["corpus"]["sha256"]) == 64
    assert {"faiss", "numpy", "python"} <= set(m["versions"])
    assert set(m["files"]) == {"vectors.faiss", "rows.jsonl", "passages.jsonl", "entries.jsonl"}
    assert (out / "current").is_symlink()
    assert [p.passage_id for p in stored.passages][:3] == ["compte#1", "activation#1", "gestionnaire#1"]
    assert stored.entries["factures"].extra == {"theme": "factures"}
    assert [(r.faq_id, r.kind) for r in stored.rows][:3] == [
        ("compte", "question"),
        ("compte", "passage"),
        ("activation", "question"),
    ]
    # One batched encode call per prompt: the questions like queries, the passages like passages.
    assert fake_embedder.calls == [(5, "query"), (5, "passage")]


def test_index_for_another_model_is_refused_with_what_to_run(make_index):
    stored = load_index(make_index())
    with pytest.raises(IndexMismatch, match="faq-search build --model") as info:
        stored.check_model("intfloat/multilingual-e5-small", 384)
    assert info.value.status == 503 and info.value.code == "index_model_mismatch"
    with pytest.raises(IndexMismatch, match="dimension 128"):
        stored.check_model("test/hashing-embedder", 128)
    stored.check_model("test/hashing-embedder", 384)  # the right model passes


def test_a_build_that_fails_midway_leaves_the_previous_index(make_index, monkeypatch, tmp_path):
    out = make_index()
    before = load_index(out).index_id
    calls = {"n": 0}
    real_write = index_store._write_jsonl

    def failing_write(path, rows):
        calls["n"] += 1
        real_write(path, rows)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(index_store, "_write_jsonl", failing_write)
    with pytest.raises(OSError, match="No space left"):
        make_index(out=out)
    assert calls["n"] == 1
    monkeypatch.undo()
    assert load_index(out).index_id == before
    assert not [p for p in (out / "builds").iterdir() if p.name.startswith(".tmp-")]


def test_a_corpus_error_stops_the_build_before_anything_is_written(make_index, tmp_path, fake_embedder):
    out = make_index()
    before = os.readlink(out / "current")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(MINI_CORPUS.read_text(encoding="utf-8") + '{"id": "compte", "question": "Q", "answer": "R"}\n')
    with pytest.raises(CorpusError, match="bad.jsonl:6: duplicate id 'compte'"):
        build_index(bad, out, fake_embedder)
    assert os.readlink(out / "current") == before
    assert len(list((out / "builds").iterdir())) == 1


def test_rebuild_switches_current_and_prunes_old_builds(make_index):
    out = make_index()
    ids = [load_index(out).index_id]
    for _ in range(4):
        make_index(out=out)
        ids.append(load_index(out).index_id)
    assert len(set(ids)) == 5
    assert resolve(out).name == ids[-1]
    kept = sorted(p.name for p in (out / "builds").iterdir())
    assert kept == sorted(ids[-1 - index_store.KEEP_OLD_BUILDS :])


@pytest.mark.parametrize("damage", ["truncate_vectors", "edit_passages", "drop_manifest", "old_format"])
def test_damaged_index_is_refused(make_index, damage):
    build = resolve(make_index())
    if damage == "truncate_vectors":
        data = (build / "vectors.faiss").read_bytes()
        (build / "vectors.faiss").write_bytes(data[: len(data) // 2])
    elif damage == "edit_passages":
        with open(build / "passages.jsonl", "a", encoding="utf-8") as fh:
            fh.write("{}\n")
    elif damage == "drop_manifest":
        (build / "manifest.json").unlink()
    else:
        manifest = json.loads((build / "manifest.json").read_text())
        manifest["format_version"] = 99
        (build / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexUnavailable) as info:
        load_index(build.parent.parent)
    assert info.value.status == 503


def test_missing_index_says_what_to_run(tmp_path):
    with pytest.raises(IndexUnavailable, match="faq-search build --corpus YOUR_CORPUS.jsonl --out"):
        load_index(tmp_path / "nothing")


def test_a_long_build_logs_progress_and_an_eta(make_index, fake_embedder, monkeypatch, caplog):
    from service.indexing import build

    monkeypatch.setattr(build, "PROGRESS_CHUNK", 2)
    monkeypatch.setattr(build, "PROGRESS_EVERY_SECONDS", 0.0)
    with caplog.at_level("INFO", logger="service.indexing.build"):
        make_index()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("embedded ")]
    assert lines and all("/10 vectors" in line and "s left" in line for line in lines)
    # Chunks are encoded per prompt, so the vectors are the same as in one call per prompt.
    assert [n for n, _ in fake_embedder.calls] == [2, 2, 1, 2, 2, 1]


# ---- the index kind, chosen by size: approximate indexes against brute force ----


def test_index_kind_is_chosen_by_size():
    assert index_store.choose_index_spec(10)["kind"] == "flat"
    assert index_store.choose_index_spec(index_store.EXACT_MAX_VECTORS)["kind"] == "flat"
    big = index_store.choose_index_spec(index_store.EXACT_MAX_VECTORS + 1)
    assert big == {"kind": "hnsw", "factory": "HNSW32,Flat", "params": index_store.DEFAULT_PARAMS["hnsw"]}
    ivf = index_store.choose_index_spec(1_000_000, "ivf-sq8")
    assert ivf["factory"] == "IVF4000,SQ8" and ivf["params"]["nlist"] == 4000
    assert index_store.choose_index_spec(100, "hnsw", efSearch=200)["params"]["efSearch"] == 200
    with pytest.raises(ValueError, match="takes no parameter"):
        index_store.choose_index_spec(100, "hnsw", nprobe=4)
    with pytest.raises(ValueError, match="index kind must be"):
        index_store.choose_index_spec(100, "annoy")


def _clustered(n: int, nq: int, d: int = 64, seed: int = 7):
    """Vectors with structure, as real embeddings have (FAISS's SyntheticDataset), L2-normalised."""
    from faiss.contrib.datasets import SyntheticDataset

    data = SyntheticDataset(d, 0, n, nq, metric="IP", seed=seed)
    base, queries = data.get_database(), data.get_queries()
    return base / np.linalg.norm(base, axis=1, keepdims=True), queries / np.linalg.norm(queries, axis=1, keepdims=True)


@pytest.mark.parametrize("kind,floor", [("hnsw", 0.95), ("hnsw-sq8", 0.9), ("ivf-sq8", 0.85)])
def test_approximate_indexes_find_the_exact_neighbours(kind, floor, tmp_path):
    base, queries = _clustered(5000, 100)
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]  # brute force
    index = VectorIndex.from_vectors(base, index_store.choose_index_spec(len(base), kind))
    _, ids = index.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), exact.tolist(), strict=True)])
    assert recall >= floor, recall
    # stored rows come back (exactly, or within the 8-bit quantisation step), for the engine's exact rescoring
    rows = np.array([3, 4000, 17])
    np.testing.assert_allclose(index.reconstruct(rows), base[rows], atol=0 if kind == "hnsw" else 0.02)


def test_manifest_records_the_index_and_its_search_parameters(make_index):
    out = make_index(index_kind="hnsw", index_params={"efSearch": 40})
    stored = load_index(out)
    assert stored.manifest.vector_index == {
        "kind": "hnsw",
        "factory": "HNSW32,Flat",
        "params": {"M": 32, "efConstruction": 80, "efSearch": 40},
    }
    assert stored.manifest.faiss["type"] == "IndexHNSWFlat"
    import faiss

    assert faiss.downcast_index(stored.vectors._index).hnsw.efSearch == 40  # applied again on load
    assert load_index(make_index(out=out.parent / "small")).manifest.vector_index["kind"] == "flat"


def test_engine_ranks_the_same_over_hnsw_as_over_flat(make_index, fake_embedder, tmp_path):
    from service.search.engine import SearchEngine

    flat = SearchEngine(fake_embedder, load_index(make_index(out=tmp_path / "flat")))
    hnsw = SearchEngine(fake_embedder, load_index(make_index(out=tmp_path / "hnsw", index_kind="hnsw")))
    for query in ("mot de passe oublié", "facture refusée", "compte administrateur"):
        a, b = flat.search(query), hnsw.search(query)
        assert [(r.faq_id, r.score) for r in a.results] == [(r.faq_id, r.score) for r in b.results]


def test_a_failed_vector_write_is_an_os_error_and_changes_nothing(make_index, monkeypatch):
    out = make_index()
    before = resolve(out)

    def full_disk(index, path):
        raise RuntimeError("Error in faiss::write_index: write error (No space left on device)")

    monkeypatch.setattr(index_store.faiss, "write_index", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        make_index()
    assert resolve(out) == before and not [p for p in (out / "builds").iterdir() if p.name.startswith(".tmp")]


# ---- incremental builds: vectors reused by content hash ----


def _edited(tmp_path, source, faq_id: str, suffix: str):
    from service.corpus import read_corpus

    identity, entries = read_corpus(source)
    lines = [json.dumps({"faq": identity.to_dict()}, ensure_ascii=False)] if identity.name else []
    for entry in entries:
        data = entry.to_dict()
        if entry.id == faq_id:
            data["answer"] += suffix
        lines.append(json.dumps(data, ensure_ascii=False))
    path = tmp_path / f"edited-{faq_id}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class CountingEmbedder:
    """The fake embedder, counting the texts it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.texts = inner, 0
        self.model_id, self.dimension, self.prompts = inner.model_id, inner.dimension, inner.prompts

    def prompt_for(self, kind):
        return self.inner.prompt_for(kind)

    def encode(self, texts, **kwargs):
        self.texts += len(texts)
        return self.inner.encode(texts, **kwargs)


def test_an_edit_re_embeds_only_what_changed_and_equals_a_full_build(tmp_path, fake_embedder):
    from service.search.engine import SearchEngine

    counting = CountingEmbedder(fake_embedder)
    first = build_index(MINI_CORPUS, tmp_path / "index", counting, show_progress=False)
    assert first.vectors_reused == {"reused": 0, "embedded": first.counts.vectors, "from": None}
    edited = _edited(tmp_path, MINI_CORPUS, "gestionnaire", " Le support répond sous deux jours.")
    counting.texts = 0
    second = build_index(edited, tmp_path / "index", counting, show_progress=False)
    # The text is added to the entry's last section: that passage alone is new (its question and first section are not).
    changed_rows = 1
    assert second.vectors_reused["embedded"] == counting.texts == changed_rows
    assert second.vectors_reused["reused"] == second.counts.vectors - changed_rows
    assert second.vectors_reused["from"] == first.index_id
    full = build_index(edited, tmp_path / "full", fake_embedder, show_progress=False, reuse=False)
    assert full.vectors_reused["reused"] == 0
    incremental, scratch = load_index(tmp_path / "index"), load_index(tmp_path / "full")
    assert [r.to_dict() for r in incremental.rows] == [r.to_dict() for r in scratch.rows]
    n = len(incremental.rows)
    np.testing.assert_allclose(
        incremental.vectors.reconstruct(np.arange(n)), scratch.vectors.reconstruct(np.arange(n)), atol=1e-6
    )
    a, b = SearchEngine(fake_embedder, incremental), SearchEngine(fake_embedder, scratch)
    for query in ("gestionnaire principal parti", "lien d'activation", "facture sous-traitant", "créer un compte"):
        assert [r.faq_id for r in a.search(query).results] == [r.faq_id for r in b.search(query).results]


def test_vectors_are_not_reused_across_models_or_lossy_storage(tmp_path, fake_embedder):
    build_index(MINI_CORPUS, tmp_path / "index", fake_embedder, show_progress=False)

    class Other(CountingEmbedder):
        model_id = "test/another-model"

    other = Other(fake_embedder)
    other.model_id = "test/another-model"
    rebuilt = build_index(MINI_CORPUS, tmp_path / "index", other, show_progress=False)
    assert rebuilt.vectors_reused["reused"] == 0 and other.texts == rebuilt.counts.vectors
    build_index(MINI_CORPUS, tmp_path / "sq8", fake_embedder, show_progress=False, index_kind="hnsw-sq8")
    again = build_index(MINI_CORPUS, tmp_path / "sq8", fake_embedder, show_progress=False, index_kind="hnsw-sq8")
    assert again.vectors_reused["reused"] == 0, "SQ8 stores approximations: embed again"


@pytest.mark.slow
def test_with_the_real_encoder_an_incremental_build_equals_a_full_one(tmp_path, real_embedder):
    """The ONNX encoder batches differently when it embeds one text instead of all: the vectors stay within
    float tolerance and every paraphrase ranks the same."""
    from conftest import CHORUS_CORPUS, PARAPHRASES

    from service.search.engine import SearchEngine

    build_index(CHORUS_CORPUS, tmp_path / "index", real_embedder, show_progress=False)
    edited = _edited(tmp_path, CHORUS_CORPUS, "chorus-pro-5", " Un guide pas à pas est disponible.")
    incremental = build_index(edited, tmp_path / "index", real_embedder, show_progress=False)
    assert incremental.vectors_reused["embedded"] == 1  # the one passage of the edited entry
    assert incremental.vectors_reused["reused"] == incremental.counts.vectors - 1
    build_index(edited, tmp_path / "full", real_embedder, show_progress=False, reuse=False)
    a, b = load_index(tmp_path / "index"), load_index(tmp_path / "full")
    n = len(a.rows)
    np.testing.assert_allclose(a.vectors.reconstruct(np.arange(n)), b.vectors.reconstruct(np.arange(n)), atol=1e-5)
    ea, eb = SearchEngine(real_embedder, a, cache_size=0), SearchEngine(real_embedder, b, cache_size=0)
    for query, _ in PARAPHRASES:
        ra, rb = ea.search(query), eb.search(query)
        assert [r.faq_id for r in ra.results] == [r.faq_id for r in rb.results], query
        assert ra.answered == rb.answered, query


def test_a_current_build_that_cannot_be_read_never_stops_the_next_build(tmp_path, fake_embedder):
    """A manifest nested thousands deep, a manifest whose passage_text is a number, a null line in entries.jsonl:
    the build replaces it, embedding everything."""
    from service.indexing.store import resolve

    for damage in ("deep", "passage_text", "null_entry"):
        out = tmp_path / damage
        build_index(MINI_CORPUS, out, fake_embedder, show_progress=False)
        build = resolve(out)
        manifest = json.loads((build / "manifest.json").read_text())
        if damage == "deep":
            (build / "manifest.json").write_text('{"faq": ' + "[" * 50_000 + "]" * 50_000 + "}")
        elif damage == "passage_text":
            manifest["passage_text"] = 5
            (build / "manifest.json").write_text(json.dumps(manifest))
        else:
            with open(build / "entries.jsonl", "a", encoding="utf-8") as fh:
                fh.write("null\n")
        rebuilt = build_index(MINI_CORPUS, out, fake_embedder, show_progress=False)
        assert rebuilt.vectors_reused["reused"] == 0, damage
        assert load_index(out).index_id == rebuilt.index_id


def test_the_encoder_fingerprint_covers_the_tokenizer_and_length(tmp_path):
    """Vectors are reused only if the weights, tokenizer and configuration files are the same."""
    from service.indexing.build import weights_sha256

    model = tmp_path / "model"
    (model / "onnx").mkdir(parents=True)
    (model / "onnx" / "model.onnx").write_bytes(b"weights")
    (model / "sentence_bert_config.json").write_text('{"max_seq_length": 512}')

    class Fake:
        path = model / "onnx" / "model.onnx"

    first = weights_sha256(Fake())
    (model / "sentence_bert_config.json").write_text('{"max_seq_length": 64}')
    assert weights_sha256(Fake()) != first
    assert weights_sha256(object()) is None


@pytest.mark.parametrize("version", [2, 3])
def test_an_index_an_earlier_version_wrote_still_loads_searches_and_is_rebuilt_over(tmp_path, fake_embedder, version):
    """``tests/data/old_indexes/``: indexes as earlier versions wrote them (format 2; format 3 before the typed
    manifest). Today's service reads them, searches them as built, and a new build over one replaces it."""
    import shutil

    from conftest import DATA

    from service.search.engine import SearchEngine

    out = tmp_path / "index"
    shutil.copytree(DATA / "old_indexes" / f"format{version}", out, symlinks=True)
    stored = load_index(out)
    manifest = stored.manifest
    assert manifest.format_version == version and manifest.encoder_backend == "custom"
    assert manifest.counts.entries == 4 and manifest.identity.language == "fr"
    assert index_store.Manifest.from_dict(manifest.to_dict()) == manifest  # read as written, written as read
    assert manifest.scoring.answer_model() is not None, "built with the answer check: it still decides with it"
    engine = SearchEngine(fake_embedder, stored)
    build_index(MINI_CORPUS, tmp_path / "today", fake_embedder, show_progress=False)
    today = SearchEngine(fake_embedder, load_index(tmp_path / "today"))
    for query in ("transférer le rôle de gestionnaire principal", "facture sous-traitant", "lien d'activation"):
        old, new = engine.search(query, top_k=4), today.search(query, top_k=4)
        assert [r.faq_id for r in old.results] == [r.faq_id for r in new.results], query
        if version == 3:  # the same scoring: the same scores (format 2 decides as it was built, without alt weights)
            assert [r.score for r in old.results] == pytest.approx([r.score for r in new.results], abs=1e-6)
    assert engine.summary()["format_version"] == version
    rebuilt = build_index(MINI_CORPUS, out, fake_embedder, show_progress=False)
    assert rebuilt.format_version == index_store.FORMAT_VERSION
    assert rebuilt.changes["previous_index_id"] == stored.index_id
    assert load_index(out).index_id == rebuilt.index_id
