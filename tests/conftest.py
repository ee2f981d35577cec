"""Shared fixtures: a fast fake embedder and small indexes for most tests; the real model for the slow tier."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from service.http.app import create_app
from service.indexing.build import build_index
from service.indexing.store import load_index
from service.search.engine import SearchEngine

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
MINI_CORPUS = DATA / "mini_faq.jsonl"
CHORUS_CORPUS = ROOT / "corpus" / "chorus_pro_faq.jsonl"
#: Chorus Pro questions as users type them (no accents, typos, synonyms), each with the entry that answers it and,
#: for a question about one sub-section, the passage that must come first; written by the team, none copied.
CHORUS_QUESTIONS = ROOT / "tests" / "data" / "chorus_paraphrases.jsonl"
_ROWS = [json.loads(line) for line in CHORUS_QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
PARAPHRASES: list[tuple[str, str]] = [(r["query"], r["faq_id"]) for r in _ROWS]
PASSAGE: dict[str, str] = {r["query"]: r["passage_id"] for r in _ROWS if "passage_id" in r}
#: The team's shared folder beside the clone (evaluation sets, the seed page): CI has it, a fresh clone may not.
SHARED = ROOT.parent / "shared"


def shared(relative: str) -> Path:
    """A file or folder under ``../shared``; skips the test when that folder is absent (a fresh clone), fails when
    it is present but lacks this path, and fails when it is absent in CI (``CI=true``), where it must be."""
    if not SHARED.is_dir():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{SHARED} is absent, and CI must have it beside the clone")
        pytest.skip(f"{SHARED} is absent (a fresh clone): the evaluation sets and the seed page live there")
    path = SHARED / relative
    if not path.exists():
        pytest.fail(f"{path} is missing from {SHARED}")
    return path


MODEL_DIR = ROOT / "models" / "multilingual-e5-small"
LIVE_ADMIN_TOKEN = "live-admin-token"


def linked_model_copy(tmp_path: Path, without: str | None = None) -> Path:
    """The converted model as ``tmp_path/model``: every file a symlink to the real one (nothing copied, nothing of
    the real one changed), except the file named ``without``, left out."""
    copy = tmp_path / "model"
    for path in MODEL_DIR.rglob("*"):
        target = copy / path.relative_to(MODEL_DIR)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.name != without:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    return copy  # the admin token of the live_url server


class HashingEmbedder:
    """Deterministic bag-of-words embedder: shared (accent-folded) words give high cosine. Fast, no model."""

    model_id = "test/hashing-embedder"
    dimension = 384
    prompts = {"query": "", "passage": ""}

    def __init__(self):
        self.calls: list[tuple[int, str]] = []

    def _word_vector(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self.dimension)

    def encode(self, texts, kind="query", batch_size=32, show_progress=False):
        self.calls.append((len(texts), kind))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            folded = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
            words = re.findall(r"[a-z0-9]{3,}", folded) or ["<empty>"]
            vec = sum(self._word_vector(w) for w in words)
            out[i] = vec / np.linalg.norm(vec)
        return out

    def prompt_for(self, kind):
        return ""


@pytest.fixture
def fake_embedder():
    return HashingEmbedder()


@pytest.fixture
def make_index(tmp_path, fake_embedder):
    """Factory: build an index of a corpus (default the mini corpus) with the fake embedder."""

    def _make(corpus=MINI_CORPUS, out=None, **kwargs):
        out = out or tmp_path / "index"
        build_index(corpus, out, fake_embedder, show_progress=False, **kwargs)
        return out

    return _make


@pytest.fixture
def engine(make_index, fake_embedder):
    return SearchEngine(fake_embedder, load_index(make_index()))


def service_for(engine, **settings):
    """A ``FaqService`` around ``engine``, with these settings over the environment's."""
    from service.core.faq_service import FaqService
    from service.settings import Settings

    return FaqService(Settings.from_env(**settings), engine)


@pytest.fixture
def app(engine):
    return create_app({"TESTING": True}, engine=engine)


@pytest.fixture
def client(app):
    return app.test_client()


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago (for a server a test starts, or one that must not answer)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app):
    """Serve ``app`` on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture(scope="module")
def live_url(tmp_path_factory):
    """A real HTTP server on 127.0.0.1 around a small engine (mini corpus, fake embedder), for one module."""
    embedder = HashingEmbedder()
    out = tmp_path_factory.mktemp("live-index")
    build_index(MINI_CORPUS, out, embedder, show_progress=False)
    app = create_app(
        {"TESTING": False, "FAQ_ADMIN_TOKEN": LIVE_ADMIN_TOKEN}, engine=SearchEngine(embedder, load_index(out))
    )
    with serving(app) as url:
        yield url


def corpus_with(source: Path, out_dir: Path, marker: str) -> tuple[Path, str]:
    """A copy of ``source`` whose first answer ends with ``marker``: a new build with visibly new content."""
    import json

    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    first = next(r for r in rows if "id" in r)  # after the corpus's "faq" header, if it has one
    first["answer"] = f"{first['answer']}\n\nRévision {marker}."
    path = out_dir / f"corpus-{marker}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path, first["id"]


#: The admin token of the ``learning`` app.
LEARNING_TOKEN = "admin-secret"


class RecordingRebuilder:
    """Stands in for the rebuild (a child process running the real build): records what was asked."""

    def __init__(self):
        self.requests = []
        self.state = None

    def request(self, action_id, attempt=1):
        self.requests.append(action_id)
        return {"state": "running", "action": action_id, "attempt": attempt}

    def retry(self):
        self.state = {"state": "running", "action": "retry", "attempt": 1, "pending": True, "attempts_left": 3}
        return self.request("retry")

    def status(self):
        return self.state

    def stop(self):
        pass


@pytest.fixture
def learning(tmp_path, fake_embedder):
    """An app with a query log and the admin token over the mini corpus (copied: the reviewed file goes beside it)."""
    corpus = tmp_path / "faq.jsonl"
    corpus.write_bytes(MINI_CORPUS.read_bytes())
    index = tmp_path / "index"
    build_index(corpus, index, fake_embedder, show_progress=False)
    app = create_app(
        {"TESTING": True, "FAQ_QUERY_LOG": str(tmp_path / "log.db"), "FAQ_ADMIN_TOKEN": LEARNING_TOKEN,
         "FAQ_CORPUS": str(corpus), "FAQ_INDEX": str(index)},
        engine=SearchEngine(fake_embedder, load_index(index)),
    )  # fmt: skip
    app.extensions["faqs"].default.rebuilder = RecordingRebuilder()
    yield app, app.test_client(), tmp_path
    app.extensions["faqs"].default.query_log.close()


def assert_error(response, status: int, code: str) -> dict:
    """The one error shape: JSON ``{"error": {"status", "code", "message"}}``, no traceback."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    err = body["error"]
    assert err["status"] == status
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return err


# ---- slow tier: the real converted model, loaded once per session ----


@pytest.fixture(scope="session")
def torch_embedder():
    """The converted model through sentence-transformers on torch (the reference every other path is held to)."""
    from service.encoders.torch_encoder import SentenceTransformerEmbedder

    if not (MODEL_DIR / "faq_model.json").is_file():
        pytest.fail(f"{MODEL_DIR} is missing: run `make model` (make test does it)")
    return SentenceTransformerEmbedder(str(MODEL_DIR))


@pytest.fixture(scope="session")
def real_embedder():
    """The converted model through the service's default encoder (``load_embedder``: ONNX when exported)."""
    from service.encoders.loading import load_embedder

    if not (MODEL_DIR / "faq_model.json").is_file():
        pytest.fail(f"{MODEL_DIR} is missing: run `make model` (make test does it)")
    return load_embedder(str(MODEL_DIR), "auto")


@pytest.fixture(scope="session")
def real_index_dir(tmp_path_factory, real_embedder):
    out = tmp_path_factory.mktemp("chorus-index")
    build_index(CHORUS_CORPUS, out, real_embedder, show_progress=False)
    return out


@pytest.fixture(scope="session")
def real_engine(real_embedder, real_index_dir):
    return SearchEngine(real_embedder, load_index(real_index_dir))
