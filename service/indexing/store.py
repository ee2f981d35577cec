"""The on-disk index format. Only this module writes or reads index files.

Layout of an index directory (``index/`` by default)::

    index/
      current -> builds/<index_id>      symlink, swapped atomically by each build
      published.jsonl                   every build ``current`` pointed to, in order (the fallback takes only these)
      builds/<index_id>/
        manifest.json                   written last; lists every other file with its SHA-256
        vectors.faiss                   FAISS index over L2-normalised float32 vectors (inner product = cosine):
                                        exact (Flat) up to EXACT_MAX_VECTORS, else HNSW (see choose_index_spec)
        rows.jsonl                      line i says what vector i represents: an entry's question, one of its
                                        alternative questions, or one of its answer passages
        passages.jsonl                  the answer passages (what a result shows)
        entries.jsonl                   the corpus entries, for GET /faq/<id>

A build is written into a hidden temporary directory (``.tmp-<pid>-…``), renamed into ``builds/``, then
published by replacing the ``current`` symlink with ``os.replace``: a reader sees the old index or the new one,
never a mix, and a failed build leaves ``current`` untouched. ``load_index`` also accepts a build directory
itself. Earlier builds are kept for rollback, ``KEEP_OLD_BUILDS`` of each origin (an operator's, the review
loop's), and the temporary directory of a build whose process is gone is removed by the next build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..corpus import ROW_KINDS, FaqEntry, FaqIdentity, Passage, Row
from ..errors import IndexMismatch, IndexUnavailable
from ..files import sha256_file
from ..processes import alive
from .manifest import FORMAT_VERSION, READABLE_VERSIONS, Counts, Manifest, ManifestError, origin_of

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
ROWS = "rows.jsonl"
PASSAGES = "passages.jsonl"
ENTRIES = "entries.jsonl"
CURRENT = "current"
BUILDS = "builds"
PUBLISHED = "published.jsonl"
#: Older builds kept beside the current one (for rollback and for readers still on them), for each origin of
#: builds: an operator's (``faq-search build``) and the review loop's, so that a morning of review decisions
#: never pushes out the last build an operator made.
KEEP_OLD_BUILDS = 2
#: Temporary directories of a build whose process cannot be told dead are removed after this long.
STALE_TMP_SECONDS = 24 * 3600
#: A finished build never published (stopped between its rename and the switch) is removed after this long.
UNPUBLISHED_SECONDS = 3600


#: Up to this many vectors the index is exact: a flat search of 10,000 384-d vectors takes 0.6 ms on one core
#: here and 50,000 take 4 ms (``scripts/bench.py ann``), so 20,000 (about 1.5 ms) keeps exact search within the
#: 2 ms that HNSW needs at a million. An FAQ (two or three vectors per entry) stays far below it.
EXACT_MAX_VECTORS = 20_000
#: Index kinds and their FAISS factory strings; parameters below.
INDEX_KINDS = {"flat": "Flat", "hnsw": "HNSW{M},Flat", "hnsw-sq8": "HNSW{M},SQ8", "ivf-sq8": "IVF{nlist},SQ8"}
#: Build and search parameters (measured on 1M synthetic and on PIAF's real vectors: docs/performance.md).
DEFAULT_PARAMS = {
    "hnsw": {"M": 32, "efConstruction": 80, "efSearch": 96},
    "hnsw-sq8": {"M": 32, "efConstruction": 80, "efSearch": 96},
    "ivf-sq8": {"nlist": None, "nprobe": 64},  # nlist None: 4·sqrt(n), as FAISS's guidelines suggest
}


def choose_index_spec(n: int, kind: str = "auto", **params) -> dict:
    """The vector index for ``n`` vectors: ``{"kind", "factory", "params"}``, as recorded in the manifest.

    Args:
        n: number of vectors.
        kind: ``auto`` (exact up to ``EXACT_MAX_VECTORS``, then HNSW), or one of ``INDEX_KINDS``.
        params: overrides of ``DEFAULT_PARAMS`` (``M``, ``efConstruction``, ``efSearch``, ``nlist``, ``nprobe``).
    """
    if kind == "auto":
        kind = "flat" if n <= EXACT_MAX_VECTORS else "hnsw"
    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind must be auto or one of {', '.join(INDEX_KINDS)}, not {kind!r}")
    merged = {**DEFAULT_PARAMS.get(kind, {}), **{k: v for k, v in params.items() if v is not None}}
    unknown = set(merged) - set(DEFAULT_PARAMS.get(kind, {}))
    if unknown:
        raise ValueError(f"{kind} takes no parameter {sorted(unknown)}")
    if kind == "ivf-sq8" and not merged["nlist"]:
        merged["nlist"] = max(1, min(n // 39, int(4 * np.sqrt(n))))  # FAISS wants >= 39 training points a list
    return {"kind": kind, "factory": INDEX_KINDS[kind].format(**merged), "params": merged}


def _apply_search_params(index: faiss.Index, spec: dict) -> None:
    params = spec.get("params", {})
    if "efSearch" in params:
        faiss.downcast_index(index).hnsw.efSearch = int(params["efSearch"])
    if "nprobe" in params:
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
        faiss.extract_index_ivf(index).make_direct_map()  # reconstruct() of IVF rows, for exact rescoring


class VectorIndex:
    """Inner-product search over L2-normalised vectors (cosine similarity), exact or approximate."""

    def __init__(self, faiss_index: faiss.Index, spec: dict | None = None):
        self._index = faiss_index
        self.spec = spec or {"kind": "flat", "factory": "Flat", "params": {}}
        _apply_search_params(faiss_index, self.spec)

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, spec: dict | None = None) -> VectorIndex:
        """Build an index; ``vectors`` must be (n, d) float32 rows of unit norm.

        Args:
            spec: from ``choose_index_spec`` (default: chosen by size).
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ValueError(f"expected a non-empty (n, d) matrix, got shape {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            raise ValueError("vectors must be L2-normalised (inner product = cosine)")
        spec = spec or choose_index_spec(len(vectors))
        index = faiss.index_factory(vectors.shape[1], spec["factory"], faiss.METRIC_INNER_PRODUCT)
        if "efConstruction" in spec["params"]:
            faiss.downcast_index(index).hnsw.efConstruction = int(spec["params"]["efConstruction"])
        if not index.is_trained:  # IVF lists and SQ8 ranges are learnt from (a sample of) the vectors
            rng = np.random.default_rng(0)
            sample = vectors if len(vectors) <= 200_000 else vectors[rng.choice(len(vectors), 200_000, replace=False)]
            index.train(sample)
        index.add(vectors)
        return cls(index, spec)

    @property
    def dimension(self) -> int:
        return self._index.d

    def __len__(self) -> int:
        return self._index.ntotal

    def reconstruct(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows`` as (len(rows), d) float32: exact for flat and HNSW, decoded for SQ8."""
        return self._index.reconstruct_batch(np.ascontiguousarray(rows, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows for each query.

        Args:
            queries: (m, d) float32, L2-normalised.
            k: number of neighbours; capped at the index size.
        Returns:
            ``(scores, ids)``, each (m, min(k, n)), best first; scores are cosine similarities.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        k = min(int(k), len(self))
        return self._index.search(queries, k)


@dataclass
class StoredIndex:
    """A loaded index: its manifest, vectors, what each vector represents, passages and entries by id."""

    path: Path
    manifest: Manifest
    vectors: VectorIndex
    rows: list[Row]
    passages: list[Passage]
    entries: dict[str, FaqEntry]
    #: Set when this is an earlier build loaded because the one ``current`` points to does not load:
    #: ``{"wanted", "serving", "reason"}`` (build names, not paths), shown in ``/health``.
    fallback: dict | None = None

    @property
    def index_id(self) -> str:
        return self.manifest.index_id

    @property
    def identity(self) -> FaqIdentity:
        """The FAQ's name, language, examples and support contact (empty for a build from before it)."""
        return self.manifest.faq

    @property
    def encoder_backend(self) -> str:
        """The encoder that made the vectors ("torch" for indexes older than the field, "custom" for one built with
        an embedder object)."""
        return self.manifest.encoder_backend

    def check_encoder(self, backend: str | None) -> None:
        """Refuse queries from another encoder than the one that made the vectors (int8 and fp32 differ by ~0.01
        cosine). ``backend`` None (an embedder without a named backend) is not checked.

        Raises:
            IndexMismatch: the message says how to rebuild, or which encoder serves this index.
        """
        built = self.encoder_backend
        if backend is not None and built != "custom" and backend != built:
            raise IndexMismatch(
                f"index {self.path} was built with the {built} encoder, but queries would be encoded with "
                f"{backend}: rebuild it with `faq-search build --backend {backend} …`, or serve it with "
                f"its own encoder (unset FAQ_BACKEND, or FAQ_BACKEND={built}, and restart)."
            )

    def check_model(self, model_id: str, dimension: int) -> None:
        """Refuse an index built for another model.

        Raises:
            IndexMismatch: model name or dimension differ; the message says what to run.
        """
        built = self.manifest.model
        if built.name != model_id or built.dimension != dimension:
            raise IndexMismatch(
                f"index {self.path} was built with model {built.name!r} (dimension {built.dimension}) "
                f"but the service uses {model_id!r} (dimension {dimension}). Rebuild it with "
                f"`faq-search build --model <that model> --out <index dir>`, or set FAQ_MODEL "
                f"to the model the index was built with."
            )


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def library_versions() -> dict:
    """Versions of the libraries that shape the vectors and the index file."""
    import importlib.metadata as md

    versions = {"python": platform.python_version(), "faiss": faiss.__version__, "numpy": np.__version__}
    for dist in ("sentence-transformers", "transformers", "torch", "tokenizers"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return versions


def new_index_id(corpus_sha256: str, model_name: str) -> str:
    """A sortable id: UTC build time plus a short hash of what went in."""
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000)) + f"{now // 1000 % 1_000_000:06d}Z"
    digest = hashlib.sha256(f"{corpus_sha256}\0{model_name}\0{now}".encode()).hexdigest()[:8]
    return f"{stamp}-{digest}"


def write_index(
    out_dir: str | os.PathLike,
    vectors: np.ndarray,
    rows: list[Row],
    passages: list[Passage],
    entries: list[FaqEntry],
    manifest: Manifest,
) -> Manifest:
    """Write a new build and publish it atomically as ``out_dir/current``.

    Args:
        out_dir: the index directory (created if missing).
        vectors: (n, d) float32, L2-normalised, vector i for ``rows[i]``.
        rows: what each vector represents, aligned with ``vectors``.
        passages: the answer passages.
        entries: the corpus entries.
        manifest: what the build was made from and with; the format version, the counts, the files' checksums, the
            FAISS index and the library versions are added here.
    Returns:
        The manifest as written.
    """
    if len(vectors) != len(rows):
        raise ValueError(f"{len(vectors)} vectors for {len(rows)} rows")
    out = Path(out_dir)
    builds = out / BUILDS
    builds.mkdir(parents=True, exist_ok=True)
    index_id = manifest.index_id
    final = builds / index_id
    if final.exists():
        raise FileExistsError(f"build {final} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f"{_tmp_prefix('build')}{index_id}-", dir=builds))
    link_tmp = out / f".{CURRENT}.tmp-{os.getpid()}"
    renamed = published = False
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the service may run as another user
        vector_index = VectorIndex.from_vectors(vectors, manifest.vector_index)
        try:
            faiss.write_index(vector_index._index, str(tmp / VECTORS))
        except RuntimeError as exc:  # FAISS reports a failed write (a full disk…) as a RuntimeError
            raise OSError(f"cannot write {tmp / VECTORS}: {str(exc).splitlines()[-1]}") from exc
        with open(tmp / VECTORS, "rb+") as fh:
            os.fsync(fh.fileno())
        _write_jsonl(tmp / ROWS, (r.to_dict() for r in rows))
        _write_jsonl(tmp / PASSAGES, (p.to_dict() for p in passages))
        _write_jsonl(tmp / ENTRIES, (e.to_dict() for e in entries))
        full = manifest.with_(
            format_version=FORMAT_VERSION,
            metric="inner_product",
            normalized=True,
            faiss={"type": type(faiss.downcast_index(vector_index._index)).__name__, "ntotal": len(vector_index)},
            vector_index=vector_index.spec,
            counts=Counts(len(entries), len(passages), len(rows), _count_kinds(rows)),
            files={name: sha256_file(tmp / name) for name in (VECTORS, ROWS, PASSAGES, ENTRIES)},
            versions=library_versions(),
        )
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(full.to_dict(), fh, ensure_ascii=False, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
        _load_build(tmp, full, verify=False)  # what is published reads back (the service's own reader)
        _start_published_list(out)
        tmp.rename(final)
        renamed = True
        _fsync_dir(builds)
        _point_current(out, index_id, link_tmp, manifest.origin)
        published = True
    except BaseException:
        # Nothing of a failed build stays behind: not its temporary directory, not a build that was never
        # published (a full disk or no inodes left at the symlink), not a half-made link.
        shutil.rmtree(tmp, ignore_errors=True)
        if renamed and not published:
            shutil.rmtree(final, ignore_errors=True)
        if link_tmp.is_symlink():
            link_tmp.unlink(missing_ok=True)
        raise
    _prune(builds, keep=final)
    return full


def _point_current(out: Path, index_id: str, link_tmp: Path, origin: str | None = None) -> None:
    """Point ``out/current`` at ``builds/<index_id>`` in one step (a new link renamed over the old one), then record
    it in ``published.jsonl`` (a build killed before this point is never served, not even as a fallback)."""
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(Path(BUILDS) / index_id, link_tmp)  # a symlink takes an inode: it can fail when the build did not
    os.replace(link_tmp, out / CURRENT)
    _fsync_dir(out)
    line = json.dumps({"index_id": index_id, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "origin": origin or "operator"})  # fmt: skip
    try:
        with open(out / PUBLISHED, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError as exc:  # published all the same; only the fallback's list misses it
        log.warning("could not record the publication of %s in %s: %s", index_id, out / PUBLISHED, exc)


def published_builds(index_dir: str | os.PathLike) -> list[str] | None:
    """The ids of the builds ``current`` has pointed to, oldest first (None: an index directory from before the
    list was kept, where every finished build counts)."""
    try:
        lines = _lines(Path(index_dir) / PUBLISHED)
    except FileNotFoundError:
        return None
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line)["index_id"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a crash
    return out


def _start_published_list(out: Path) -> None:
    """Create ``published.jsonl`` if the index directory has none yet, listing the builds already there (published
    before the list was kept): from then on, a build is listed only once ``current`` pointed to it."""
    path = out / PUBLISHED
    if path.exists():
        return
    builds = sorted(p.name for p in (out / BUILDS).iterdir() if p.is_dir() and not p.name.startswith("."))
    tmp = out / f".{PUBLISHED}.tmp-{os.getpid()}"
    tmp.write_text("".join(json.dumps({"index_id": b, "origin": _origin(out / BUILDS / b)}) + "\n" for b in builds),
                   encoding="utf-8")  # fmt: skip
    os.replace(tmp, path)


def _tmp_prefix(kind: str) -> str:
    """The name a temporary directory of this process starts with: it carries the pid, so that a later build
    removes it once this process is gone."""
    return f".tmp-{os.getpid()}-{kind}-"


def _served_model(manifest: Manifest) -> tuple:
    """What a replica's encoder must match to serve a build: the model's name and dimension, and the encoder."""
    return manifest.model.name, manifest.model.dimension, manifest.encoder_backend


def publish_index(index_dir: str | os.PathLike, to: str | os.PathLike, new_model: bool = False) -> dict:
    """Publish the build ``index_dir`` points to into the index directory ``to``, from which replicas serve.

    The build is checked (format, checksums, counts) before it leaves, copied into a hidden directory of
    ``to/builds``, checked again there, renamed into place, and only then is ``to/current`` swapped to it: a replica
    (its watcher, ``FAQ_WATCH_SECONDS``) sees the old build or the new one, never a part. Publishing a build that
    ``to`` already holds (a rollback) only swaps ``current``, after checking that copy again. The manifest and its
    checksums travel with the build; each replica checks them again when it loads it, and refuses a build made
    with another model or encoder than its own.

    A build made with another model or encoder than the published one is refused unless ``new_model`` (the
    replicas, started with the old model, would refuse it, and a replica started after it would not start): change
    the replicas' model first. A copy already in ``to`` that fails its checks is replaced by a new copy.

    Returns:
        The published build's manifest.
    Raises:
        IndexUnavailable: the build or its copy fails its checks (``to/current`` is then left as it was).
        IndexMismatch: another model than the published build's, without ``new_model``.
    """
    if not str(to).strip():
        raise IndexUnavailable("no directory to publish into: name the replicas' index directory (--to)")
    build = resolve(index_dir)
    manifest = read_manifest(build)
    load_index(build)
    index_id = manifest.index_id
    out = Path(to)
    if not new_model and (out / CURRENT).exists():
        try:
            published = read_manifest(out)
        except IndexUnavailable:
            published = None  # a damaged published build: nothing to compare with
        if published is not None and _served_model(published) != _served_model(manifest):
            raise IndexMismatch(
                f"{build} was built with {_served_model(manifest)}, the published index with "
                f"{_served_model(published)} (model, dimension, encoder): the replicas serve one model. Start them "
                "with the new model first, then publish with --new-model"
            )
    builds = out / BUILDS
    builds.mkdir(parents=True, exist_ok=True)
    final = builds / index_id
    if final.is_dir():
        try:
            load_index(final)
        except IndexUnavailable as exc:  # damaged since it was published: copied again from the sound build
            log.warning("the published copy %s fails its checks (%s): copying it again", final, exc.message)
            damaged = builds / f"{_tmp_prefix('damaged')}{index_id}"
            final.rename(damaged)
            shutil.rmtree(damaged, ignore_errors=True)
    if not final.is_dir():
        tmp = builds / f"{_tmp_prefix('publish')}{index_id}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(build, tmp)
            for path in tmp.iterdir():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
            load_index(tmp)
            _fsync_dir(tmp)
            try:
                tmp.rename(final)
            except OSError:
                if not final.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another publish of the same build was first: its copy stays
            _fsync_dir(builds)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _point_current(out, index_id, out / f".{CURRENT}.tmp-publish-{os.getpid()}", manifest.origin)
    _prune(builds, keep=final)
    log.info("published %s into %s", index_id, out)
    return manifest


def _count_kinds(rows: list[Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.kind] = counts.get(row.kind, 0) + 1
    return counts


def _prune(builds: Path, keep: Path) -> None:
    """Remove old builds beyond ``KEEP_OLD_BUILDS`` of each origin, and the temporary directories of builds whose
    process is gone (or older than ``STALE_TMP_SECONDS``)."""
    done = sorted((p for p in builds.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)
    published = published_builds(builds.parent)
    kept: dict[str, int] = {}
    for old in (p for p in done if p != keep):
        if published is not None and old.name not in published:
            # Never published (its build was stopped before the switch, or is switching now): it counts for no
            # origin, and goes once it is old enough not to be a build about to switch.
            with contextlib.suppress(OSError):
                if old.stat().st_mtime < time.time() - UNPUBLISHED_SECONDS:
                    shutil.rmtree(old, ignore_errors=True)
            continue
        origin = _origin(old)
        kept[origin] = kept.get(origin, 0) + 1
        if kept[origin] > KEEP_OLD_BUILDS:
            shutil.rmtree(old, ignore_errors=True)
    _trim_published(builds.parent, {p.name for p in builds.iterdir() if p.is_dir()})
    cutoff = time.time() - STALE_TMP_SECONDS
    for stale in builds.glob(".tmp-*"):
        pid = stale.name.split("-")[1]
        gone = pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid))
        try:
            if gone or stale.stat().st_mtime < cutoff:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            continue  # removed by another build meanwhile


def load_manifest_origin(build: str | os.PathLike) -> str:
    """Who made the build ``build`` (a build directory or an index directory): ``operator`` or ``review``."""
    return _origin(resolve(build))


def _origin(build: Path) -> str:
    """Who made a build (its manifest's ``origin``; ``operator`` when it does not say or cannot be read)."""
    try:
        data = json.loads((build / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return "operator"
    return origin_of(data)


def _trim_published(out: Path, existing: set[str]) -> None:
    """Keep ``published.jsonl`` to the builds still on disk (rewritten whole, through a renamed temporary file)."""
    path = out / PUBLISHED
    try:
        lines = _lines(path)
    except OSError:
        return
    kept = [line for line in lines if any(f'"{name}"' in line for name in existing)]
    if len(kept) == len(lines):
        return
    tmp = out / f".{PUBLISHED}.tmp-{os.getpid()}"
    try:
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def resolve(index_dir: str | os.PathLike) -> Path:
    """The build directory an index path points to: ``index_dir/current`` or ``index_dir`` itself."""
    path = Path(index_dir)
    try:
        if (path / MANIFEST).is_file():
            return path
        current = path / CURRENT
        if current.exists():
            return current.resolve()
    except (OSError, RuntimeError) as exc:  # an unreadable directory; a link loop (RuntimeError before Python 3.13)
        raise IndexUnavailable(
            f"cannot read the index directory {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from exc
    raise IndexUnavailable(
        f"no index at {path}: build one with `.venv/bin/faq-search build --corpus YOUR_CORPUS.jsonl --out {path}` "
        "(`make index` builds the default corpus into index/)"
    )


def read_manifest(index_dir: str | os.PathLike) -> Manifest:
    """The manifest of the build ``index_dir`` points to.

    Raises:
        IndexUnavailable: no build, an unreadable manifest, or one the service cannot serve from (the field and why).
    """
    return _read_manifest_file(resolve(index_dir))


def _read_manifest_file(build: Path) -> Manifest:
    try:
        data = json.loads((build / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        raise IndexUnavailable(f"unreadable manifest in {build}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    try:
        return Manifest.from_dict(data)
    except ManifestError as exc:
        raise IndexUnavailable(f"index {build} has a malformed manifest: {exc}") from None


def read_entries(index_dir: str | os.PathLike) -> dict[str, dict] | None:
    """The corpus entries of the build ``index_dir`` points to, by id (None when there is no index yet)."""
    try:
        build = resolve(index_dir)
    except IndexUnavailable:
        return None
    try:
        lines = _lines(build / ENTRIES)
        return {obj["id"]: obj for obj in (json.loads(line) for line in lines if line)}
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:  # TypeError: a line that is no object
        raise IndexUnavailable(f"cannot read the entries of index {build}: {exc}") from exc


def _lines(path: Path) -> list[str]:
    """A JSON Lines file's lines, split where the writer ends them (``"\\n"``): a text may hold U+2028, U+2029 or
    NEL, which ``str.splitlines`` would also cut at (the entries are written with ``ensure_ascii=False``). Blank lines
    are left out."""
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def load_index(index_dir: str | os.PathLike, verify: bool = True) -> StoredIndex:
    """Load and check a build.

    Raises:
        IndexUnavailable: missing, from another format version, truncated or corrupted (checksums), or
            inconsistent (counts, dimension).
    """
    build = resolve(index_dir)
    manifest = read_manifest(build)
    try:
        return _load_build(build, manifest, verify)
    except IndexUnavailable:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, ArithmeticError, OSError, RuntimeError) as exc:
        # A manifest without a field it must have, a field of the wrong type, a file that vanished meanwhile:
        # a damaged build like any other, refused with the reason (never a 500, never a dead watcher).
        raise IndexUnavailable(f"index {build} is malformed: {type(exc).__name__}: {exc}") from exc


def load_latest_sound(index_dir: str | os.PathLike, verify: bool = True) -> StoredIndex:
    """The build ``index_dir`` points to or, when it does not load, the newest other build of ``index_dir`` that
    does (the previous builds are kept for this): a worker that starts while the current build is damaged or
    deleted serves the last good one and says so (``StoredIndex.fallback``) instead of stopping the server.

    Raises:
        IndexUnavailable: the current build's own error, when no build at all loads.
    """
    try:
        return load_index(index_dir, verify)
    except IndexUnavailable as exc:
        failure = exc
    builds = Path(index_dir) / BUILDS
    try:
        wanted = (Path(index_dir) / CURRENT).resolve()
    except (OSError, RuntimeError):  # a `current` that is a link loop
        wanted = None
    try:
        candidates = sorted((p for p in builds.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)
    except OSError:  # no builds directory
        raise failure from None
    published = published_builds(index_dir)
    for build in candidates:  # build names start with their UTC build time: newest first
        if wanted is not None and build.resolve() == wanted:
            continue
        if published is not None and build.name not in published:
            continue  # finished but never published (its build was stopped before the switch): never served
        try:
            index = load_index(build, verify)
        except IndexUnavailable:
            continue
        wanted_name = wanted.name if wanted is not None else CURRENT
        index.fallback = {"wanted": wanted_name, "serving": build.name, "reason": failure.message}
        log.warning(
            "the current build %s does not load (%s): serving the earlier build %s",
            wanted_name,
            failure.message,
            build.name,
        )
        return index
    raise failure


def _load_build(build: Path, manifest: Manifest, verify: bool) -> StoredIndex:
    if manifest.format_version not in READABLE_VERSIONS:
        raise IndexUnavailable(
            f"index {build} has format version {manifest.format_version}, this service "
            f"reads versions {', '.join(map(str, READABLE_VERSIONS))}: rebuild it with `.venv/bin/faq-search build`"
        )
    try:
        if verify:
            for name, digest in manifest.files.items():
                if sha256_file(build / name) != digest:
                    raise IndexUnavailable(
                        f"index file {build / name} does not match its manifest checksum "
                        "(truncated or modified): rebuild the index"
                    )
        vectors = VectorIndex(faiss.read_index(str(build / VECTORS)), manifest.vector_index)
        rows = [Row(**json.loads(line)) for line in _lines(build / ROWS) if line]
        passages = [Passage(**json.loads(line)) for line in _lines(build / PASSAGES) if line]
        entries = {}
        for line in _lines(build / ENTRIES):
            if line:
                obj = json.loads(line)
                entries[obj["id"]] = _entry_from_dict(obj)
    except IndexUnavailable:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexUnavailable(f"cannot read index {build}: {exc}") from exc
    unknown = sorted({row.kind for row in rows} - set(ROW_KINDS))
    if unknown:
        raise IndexUnavailable(f"index {build} has rows of unknown kind {unknown}: rebuild it with this service")
    counts = manifest.counts
    if (
        len(vectors) != len(rows)
        or len(rows) != counts.vectors
        or len(passages) != counts.passages
        or len(entries) != counts.entries
    ):
        raise IndexUnavailable(
            f"index {build} is inconsistent: {len(vectors)} vectors, {len(rows)} rows, "
            f"{len(passages)} passages, {len(entries)} entries; manifest says {counts.to_dict()}"
        )
    known_passages = {p.passage_id for p in passages}
    for row in rows:
        if row.faq_id not in entries or (row.kind == "passage" and row.ref not in known_passages):
            raise IndexUnavailable(
                f"index {build} is inconsistent: a vector refers to {row.faq_id!r} "
                f"{row.kind} {row.ref!r}, which the index does not hold"
            )
    if vectors.dimension != manifest.model.dimension:
        raise IndexUnavailable(
            f"index {build} holds {vectors.dimension}-d vectors, manifest says {manifest.model.dimension}"
        )
    return StoredIndex(build, manifest, vectors, rows, passages, entries)


def _entry_from_dict(obj: dict) -> FaqEntry:
    known = {"id", "question", "answer", "source", "tags", "alt_questions", "not_questions", "links"}
    return FaqEntry(
        id=obj["id"],
        question=obj["question"],
        answer=obj["answer"],
        source=obj.get("source"),
        tags=tuple(obj.get("tags", ())),
        alt_questions=tuple(obj.get("alt_questions", ())),
        not_questions=tuple(obj.get("not_questions", ())),
        extra={k: v for k, v in obj.items() if k not in known},
        links=tuple(obj.get("links", ())),
    )
