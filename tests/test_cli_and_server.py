"""The scripts and the server as an operator runs them: build_index.py, then python -m service over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import MINI_CORPUS, MODEL_DIR, ROOT, free_port

pytestmark = pytest.mark.slow


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "FAQ_MODEL": str(MODEL_DIR)}


def _run(args, **kwargs):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=600, **kwargs
    )


def test_build_index_cli(tmp_path):
    out = tmp_path / "idx"
    done = _run(["scripts/build_index.py", "--corpus", str(MINI_CORPUS), "--out", str(out), "--model", str(MODEL_DIR)])
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["counts"] == {
        "entries": 4,
        "passages": 5,
        "vectors": 10,
        "vectors_by_kind": {"question": 4, "alt_question": 1, "passage": 5},
    }
    manifest = json.loads((out / "current" / "manifest.json").read_text())  # the file as written
    assert manifest["model"]["name"].startswith("intfloat/multilingual-e5-small")
    assert manifest["model"]["prompts"] == {"query": "query: ", "passage": "passage: "}
    assert manifest["model"]["dimension"] == 384


def test_evaluate_cli_compares_methods_on_a_users_faq(tmp_path):
    queries = tmp_path / "q.jsonl"
    rows = [
        ("comment je crée mon compte", "compte"),
        ("pas reçu le lien d'activation", "activation"),
        ("notre gestionnaire principal est parti", "gestionnaire"),
        ("facture d'un sous traitant", "factures"),
    ]
    queries.write_text(
        "".join(json.dumps({"query": q, "faq_id": i}, ensure_ascii=False) + "\n" for q, i in rows), encoding="utf-8"
    )
    ood = tmp_path / "ood.jsonl"
    ood.write_text(json.dumps({"query": "recette de la tarte aux pommes"}) + "\n", encoding="utf-8")
    report = tmp_path / "report.json"
    done = _run(
        [
            "scripts/evaluate.py",
            "--corpus",
            str(MINI_CORPUS),
            "--queries",
            str(queries),
            "--ood",
            str(ood),
            "--compare",
            "bm25,default",
            "--json",
            str(report),
        ]
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:6] == ["method", "R@1", "R@5", "R@10", "MRR", "nDCG@10"]
    assert [line.split()[0] for line in lines[1:]] == ["bm25", "default"]
    results = json.loads(report.read_text())["results"]
    assert results[1]["R@1"] == 1.0 and results[1]["ood_unanswered"] == 1.0
    assert 0 <= results[0]["MRR"] <= 1 and "ood_unanswered" not in results[0]


@pytest.mark.parametrize(
    "corpus,lines,says",
    [
        ("missing.jsonl", ['{"query": "q ?", "faq_id": "compte"}'], "missing.jsonl: cannot read corpus"),
        (None, ['{"query": "q ?", "faq_id": "compte"}', "{not json"], "q.jsonl:2: not valid JSON"),
        (None, ['{"query": "q ?"}'], 'q.jsonl:1: each line must be an object with "query" and "faq_id"'),
        (None, ['{"query": "q ?", "faq_id": "nope"}'], "q.jsonl:1: faq_id ['nope'] is not in the corpus"),
    ],
)
def test_evaluate_cli_reports_bad_input_in_one_line(tmp_path, corpus, lines, says):
    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = str(tmp_path / corpus) if corpus else str(MINI_CORPUS)
    done = _run(["scripts/evaluate.py", "--corpus", corpus, "--queries", str(queries)])
    assert done.returncode == 1 and done.stderr.startswith("error:") and "Traceback" not in done.stderr
    assert says in done.stderr


def test_evaluate_cli_refuses_to_fit_on_the_report_only_set():
    done = _run(["scripts/evaluate.py", "--dataset", "cnil_faq", "--fit"])
    assert done.returncode == 2 and "reporting only" in done.stderr


def test_finetuned_build_is_named_in_the_manifest_and_served(tmp_path):
    from service.encoders.finetune import FinetuneSettings
    from service.indexing.build import build_index
    from service.search.engine_loading import load_engine
    from service.settings import Settings

    settings = FinetuneSettings(epochs=1, batch_size=4, max_seq_length=64)
    manifest = build_index(
        MINI_CORPUS,
        tmp_path / "idx",
        str(MODEL_DIR),
        show_progress=False,
        finetune=settings,
        finetune_root=tmp_path / "tuned",
    )
    tuned = manifest.model.finetuned
    assert tuned["pairs"] == 6 and tuned["base"].startswith("intfloat/multilingual-e5-small")
    assert manifest.model.name.endswith("+ finetuned on corpus " + manifest.corpus.sha256[:12])
    assert (tmp_path / "tuned").is_dir() and tuned["path"].startswith(str(tmp_path / "tuned"))
    assert manifest.scoring_settings["calibrated_for"] == tuned["base"], "says the calibration is the base model's"
    # The service configured with the base model serves the index with its fine-tuned model.
    engine = load_engine(Settings.from_env(model=str(MODEL_DIR), index=tmp_path / "idx"))
    assert engine.embedder.model_id == manifest.model.name
    assert engine.search("facture sous-traitant").results[0].faq_id == "factures"
    # A second build with the same corpus and settings reuses the model instead of training again.
    again = build_index(
        MINI_CORPUS,
        tmp_path / "idx",
        str(MODEL_DIR),
        show_progress=False,
        finetune=settings,
        finetune_root=tmp_path / "tuned",
    )
    assert again.model.finetuned == tuned


def test_adapt_model_cli_learns_user_questions_and_the_index_says_the_calibration_is_the_base_models(tmp_path):
    from service.corpus import load_corpus
    from service.encoders.finetune import training_pairs
    from service.indexing.build import build_index
    from service.search.engine_loading import load_engine
    from service.settings import Settings

    labelled = [
        ("mon admin est parti", "gestionnaire"),
        ("pas reçu le mail d'activation", "activation"),
        ("inscription premiere fois", "compte"),
    ]
    queries = tmp_path / "questions.jsonl"
    queries.write_text(
        "".join(json.dumps({"query": text, "faq_id": faq_id}, ensure_ascii=False) + "\n" for text, faq_id in labelled),
        encoding="utf-8",
    )
    out = tmp_path / "adapted"
    done = _run(
        [
            "scripts/adapt_model.py",
            "--corpus",
            str(MINI_CORPUS),
            "--queries",
            str(queries),
            "--out",
            str(out),
            "--no-onnx",
        ]
    )
    assert done.returncode == 0, done.stderr
    assert f"model ready: {out}" in done.stdout
    marker = json.loads((out / "faq_model.json").read_text())
    assert marker["user_questions"] == 3
    assert marker["pairs"] == len(training_pairs(load_corpus(MINI_CORPUS), labelled)[0]) > 6  # 6 without them
    assert marker["model_id"].endswith("finetuned on questions.jsonl (" + marker["corpus_sha256"][:12] + ")")
    manifest = build_index(MINI_CORPUS, tmp_path / "idx", str(out), show_progress=False)
    assert manifest.model.name == marker["model_id"]
    assert manifest.scoring_settings["calibrated_for"] == marker["base_model"]
    assert manifest.model.finetuned["path"] == str(out.resolve())
    # The service configured with the base model serves this index with the adapted model.
    engine = load_engine(Settings.from_env(model=str(MODEL_DIR), index=tmp_path / "idx"))
    assert engine.embedder.model_id == marker["model_id"]
    assert engine.search("facture sous-traitant").results[0].faq_id == "factures"
    # A label that names no entry is refused with one line, not a traceback.
    queries.write_text('{"query": "q ?", "faq_id": "nope"}\n', encoding="utf-8")
    done = _run(
        [
            "scripts/adapt_model.py",
            "--corpus",
            str(MINI_CORPUS),
            "--queries",
            str(queries),
            "--out",
            str(tmp_path / "bad"),
            "--no-onnx",
        ]
    )
    assert done.returncode == 1 and done.stderr.startswith("error:") and "Traceback" not in done.stderr


def test_build_index_cli_reports_corpus_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "Q ?", "answer": "R."}\n{"id": "b", "question": "Q ?"}\n')
    done = _run(["scripts/build_index.py", "--corpus", str(bad), "--out", str(tmp_path / "idx")])
    assert done.returncode == 1
    assert f"corpus error: {bad}:2: missing required field 'answer'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "idx" / "current").exists()


def test_server_answers_the_readme_example(real_index_dir):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--port", str(port), "--index", str(real_index_dir)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read()
                assert time.time() < deadline, "server did not start"
                time.sleep(0.5)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/search",
            data=json.dumps({"query": "notre admin est parti sans passer la main"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.loads(r.read())
        assert body["results"][0]["faq_id"] == "chorus-pro-4"
        assert 0 < body["results"][0]["score"] <= 1
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/search?q=", timeout=10)
        assert info.value.code == 400 and json.loads(info.value.read())["error"]["code"] == "empty_query"
        # A chunked body (no Content-Length) over the limit is refused too, not truncated into bad JSON.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        big = json.dumps({"query": "x" * 300_000}).encode()
        conn.request(
            "POST",
            "/search",
            body=iter([big[i : i + 8192] for i in range(0, len(big), 8192)]),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "payload_too_large"
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_server_refuses_to_start_without_index(tmp_path):
    done = _run(["-m", "service", "--port", str(free_port()), "--index", str(tmp_path / "none")])
    assert done.returncode == 2
    assert "faq-search build --corpus" in done.stderr


def test_server_refuses_an_index_built_for_another_model(make_index):
    done = _run(["-m", "service", "--port", str(free_port()), "--index", str(make_index())])
    assert done.returncode == 2
    assert "test/hashing-embedder" in done.stderr and "faq-search build --model" in done.stderr


def test_mcp_server_over_stdio_with_the_engine_in_process(real_index_dir):
    import asyncio

    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable, cwd=str(ROOT), env=ENV, args=["-m", "service.mcp", "--index", str(real_index_dir)]
    )

    async def session():
        async with Client(params, read_timeout_seconds=120) as client:
            return await client.call_tool("search_faq", {"query": "notre admin est parti sans passer la main"})

    result = asyncio.run(session())
    body = json.loads(result.content[0].text)
    assert not result.is_error and body["results"][0]["faq_id"] == "chorus-pro-4"


def test_bench_cli_runs_the_cache_scenario(tmp_path):
    out = tmp_path / "bench.json"
    done = _run(["scripts/bench.py", "cache", "--rounds", "1", "--json", str(out)])
    assert done.returncode == 0, done.stderr
    assert "ratio of medians" in done.stdout
    report = json.loads(out.read_text())["cache"]
    assert set(report["variants"]) == {"fresh", "repeated"} and report["variants"]["fresh"]["n"] == 50
    assert report["cache"]["hits"] == 50, "every repeated question was served from the cache"


def _log_of(proc) -> str:
    """What a stopped server said: its stderr pipe, or the file it logged to (``proc.log``)."""
    if proc.stderr is not None:
        return proc.communicate()[1]
    proc.log.seek(0)
    return proc.log.read()


def _wait_http(url: str, proc, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            assert proc.poll() is None, _log_of(proc)
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {seconds} s")


def test_faq_search_serve_runs_gunicorn_with_its_workers(real_index_dir, tmp_path):
    """The documented production command (``faq-search serve``), from another directory than the checkout."""
    port = free_port()
    command = Path(sys.executable).parent / "faq-search"
    serve = ["serve", "--index", str(real_index_dir), "--port", str(port), "--workers", "2", "--watch-seconds", "0"]
    proc = subprocess.Popen(
        [str(command), *serve],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc)
        for _ in range(20):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/search",
                headers={"Content-Type": "application/json"},
                data=json.dumps({"query": "notre admin est parti"}).encode(),
            )
            with urllib.request.urlopen(req, timeout=30) as r:
                assert json.loads(r.read())["results"][0]["faq_id"] == "chorus-pro-4"
        assert proc.poll() is None
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert err.count("Booting worker") == 2, err


def test_gunicorn_stops_with_the_reason_when_there_is_no_index(tmp_path):
    env = {**ENV, "FAQ_INDEX": str(tmp_path / "none"), "FAQ_PORT": str(free_port()), "FAQ_WORKERS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "python:service.http.gunicorn_conf", "service.http.wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"no index at {tmp_path / 'none'}" in done.stderr and "faq-search build --corpus" in done.stderr
