"""Which FAQs a service serves: one (``FAQ_INDEX`` and ``FAQ_CORPUS``, as always) or several, each with a name.

Several come from a TOML file (``FAQ_CONFIG``, ``faq-search serve --config faqs.toml``) and/or ``--faq
NAME=INDEX_DIR`` options (``FAQ_FAQS``)::

    [[faq]]
    name = "chorus-pro"                       # a slug: a-z, 0-9, - and _; it is the FAQ's URL (/faqs/chorus-pro/)
    index = "index"                           # relative paths are relative to this file
    corpus = "corpus/chorus_pro_faq.jsonl"    # optional: the review loop writes and rebuilds from it
    query_log = "logs/chorus-pro.sqlite"      # optional (needs corpus): default FAQ_QUERY_LOG, the name inserted
    default = true                            # optional: the FAQ of the unprefixed routes (default: the first)

A configuration is checked whole before anything is served: every error is listed, each with the file and line of
its ``[[faq]]`` table (``FaqConfigError``).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ServiceError
from ..indexing.store import resolve
from ..settings import Settings

#: A FAQ's name: what its URLs hold (``/faqs/<name>/search``).
SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
#: The keys of a ``[[faq]]`` table.
KEYS = ("name", "index", "corpus", "query_log", "default")
_TABLE = re.compile(r"""^\s*\[\[\s*(faq|"faq"|'faq')\s*\]\]""")


class FaqConfigError(ValueError):
    """A configuration of FAQs that cannot be served; ``errors`` lists every problem, each with where it is."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("the FAQs to serve are not valid:\n" + "\n".join(f"  {e}" for e in errors))


@dataclass(frozen=True)
class FaqSpec:
    """One FAQ to serve: its name, its index, its corpus and query log (None: no review loop), where it was given."""

    name: str
    index: Path
    corpus: Path | None = None
    query_log: Path | None = None
    default: bool = False
    where: str = "FAQ_INDEX"

    def settings(self, base: Settings) -> Settings:
        """The service's settings with this FAQ's index, corpus and query log."""
        return base.model_copy(
            update={"index": self.index, "corpus": self.corpus or base.corpus, "query_log": self.query_log}
        )


def slug_of(text: str) -> str:
    """A name for a FAQ given without one: ``chorus_pro_faq.jsonl`` → ``chorus_pro_faq``."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:63]
    return name if SLUG.fullmatch(name) else "faq"


def faq_specs(settings: Settings, check_indexes: bool = True) -> list[FaqSpec]:
    """The FAQs the settings name, default first; without ``config`` or ``faqs``, the one of ``index`` and ``corpus``.

    Args:
        check_indexes: refuse a FAQ whose index directory holds no build (a service of several FAQs serves all of
            them or does not start; a service of one starts and answers 503 until one is built, as before).
    Raises:
        FaqConfigError: every error found (a file that is not TOML, an unknown key, a name that is not a slug, a
            duplicate name, a missing index, two FAQs on one index directory or one query log, two defaults).
    """
    if not settings.config and not settings.faqs:
        specs = [FaqSpec(slug_of(Path(settings.corpus).stem), Path(settings.index), Path(settings.corpus),
                         settings.query_log, default=True)]  # fmt: skip
        errors = _check_key_scopes(settings, specs)
        if errors:
            raise FaqConfigError(errors)
        return specs
    errors: list[str] = []
    specs: list[FaqSpec] = []
    if settings.config:
        specs += _read_config(Path(settings.config), errors)
    if settings.faqs:
        specs += _parse_options(settings.faqs, errors)
    if not specs and not errors:
        errors.append(f"{settings.config or 'FAQ_FAQS'}: no FAQ is named (add a [[faq]] table or a --faq option)")
    specs = _with_query_logs(specs, settings.query_log)
    _check(specs, errors, check_indexes)
    if specs:  # (a file that could not be read names no FAQ: its keys are not judged against nothing)
        errors += _check_key_scopes(settings, specs)
    if errors:
        raise FaqConfigError(errors)
    default = next((s for s in specs if s.default), specs[0])
    return [replace(default, default=True)] + [s for s in specs if s is not default]


def parse_faq_option(option: str) -> tuple[str, str]:
    """``NAME=INDEX_DIR`` → (name, index directory).

    Raises:
        ValueError: no ``=``, or nothing on one side of it.
    """
    name, sep, index = option.partition("=")
    if not sep or not name.strip() or not index.strip():
        raise ValueError(f"--faq {option!r}: expected NAME=INDEX_DIR")
    return name.strip(), index.strip()


def _read_config(path: Path, errors: list[str]) -> list[FaqSpec]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{path}: cannot be read: {getattr(exc, 'strerror', None) or exc}")
        return []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        errors.append(f"{path}: not valid TOML: {exc}")
        return []
    lines = _table_lines(text)
    for key in data:
        if key != "faq":
            errors.append(f"{path}: unknown key '{key}' (a configuration holds [[faq]] tables)")
    tables = data.get("faq", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        errors.append(f"{path}: 'faq' must be [[faq]] tables")
        return []
    specs = []
    base = path.parent
    for i, table in enumerate(tables):
        where = f"{path}:{lines[i]}" if i < len(lines) else f"{path}: [[faq]] number {i + 1}"
        for key in table:
            if key not in KEYS:
                errors.append(f"{where}: unknown key '{key}'; accepted: {', '.join(KEYS)}")
        bad = [k for k in ("name", "index") if not isinstance(table.get(k), str) or not table[k].strip()]
        for key in bad:
            errors.append(f"{where}: '{key}' is required (a string)")
        for key in ("corpus", "query_log"):
            if key in table and (not isinstance(table[key], str) or not table[key].strip()):
                errors.append(f"{where}: '{key}' must be a path")
        if "default" in table and not isinstance(table["default"], bool):
            errors.append(f"{where}: 'default' must be true or false")
        if bad:
            continue
        paths = {k: base / v if isinstance(v := table.get(k), str) and v.strip() else None
                 for k in ("index", "corpus", "query_log")}  # fmt: skip
        specs.append(FaqSpec(table["name"], paths["index"], paths["corpus"], paths["query_log"],
                             table.get("default") is True, where))  # fmt: skip
    return specs


def _table_lines(text: str) -> list[int]:
    """The line of each ``[[faq]]`` header, in order (not those inside a multi-line string)."""
    out, inside = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        if inside is None and _TABLE.match(line):
            out.append(number)
        for quote in ('"""', "'''"):
            if (inside is None or inside == quote) and line.count(quote) % 2 == 1:
                inside = quote if inside is None else None
    return out


def _parse_options(options: str, errors: list[str]) -> list[FaqSpec]:
    specs = []
    for option in (o for o in options.split(",") if o.strip()):
        try:
            name, index = parse_faq_option(option)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        specs.append(FaqSpec(name, Path(index), where=f"--faq {option}"))
    return specs


def _with_query_logs(specs: list[FaqSpec], query_log: Path | None) -> list[FaqSpec]:
    """Each FAQ with a corpus and no query log of its own gets ``FAQ_QUERY_LOG`` with its name: queries.sqlite →
    queries.<name>.sqlite (the review loop of each FAQ reads its own log). A FAQ without a corpus keeps no log: its
    review loop would have nowhere to write."""
    if query_log is None:
        return specs
    log = Path(query_log)
    return [
        replace(s, query_log=log.with_name(f"{log.stem}.{s.name}{log.suffix}")) if s.corpus and not s.query_log else s
        for s in specs
    ]


def _real(path: Path) -> Path | str:
    """The path with its links followed, or why it cannot be (a link loop, a NUL byte): never an exception."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        return f"{path}: {getattr(exc, 'strerror', None) or exc}"


def _check(specs: list[FaqSpec], errors: list[str], check_indexes: bool) -> None:
    seen: dict[str, FaqSpec] = {}
    indexes: dict[Path, FaqSpec] = {}
    builds: dict[Path, FaqSpec] = {}
    logs: dict[Path, FaqSpec] = {}
    for spec in specs:
        paths = [_real(spec.index), *(_real(x) for x in (spec.corpus, spec.query_log) if x)]
        bad = [p for p in paths if isinstance(p, str)]
        if bad:
            errors.extend(f"{spec.where}: FAQ '{spec.name}': the path {b} cannot be used" for b in bad)
            continue
        if not SLUG.fullmatch(spec.name):
            errors.append(f"{spec.where}: name {spec.name!r} is not a slug (a-z, 0-9, - and _, at most 63, "
                          "starting with a letter or a digit)")  # fmt: skip
        if spec.name in seen:
            errors.append(f"{spec.where}: name '{spec.name}' is already the FAQ of {seen[spec.name].where}")
        seen.setdefault(spec.name, spec)
        where = paths[0]
        same_directory = where in indexes
        if same_directory:
            errors.append(f"{spec.where}: index {spec.index} is already the index of '{indexes[where].name}' "
                          f"({indexes[where].where}): each FAQ needs its own index directory")  # fmt: skip
        indexes.setdefault(where, spec)
        if spec.query_log is not None and spec.corpus is None:
            errors.append(f"{spec.where}: 'query_log' needs 'corpus' (the review loop writes its decisions beside it)")
        if spec.query_log is not None:
            log = spec.query_log.resolve()
            if log in logs:
                errors.append(f"{spec.where}: query log {spec.query_log} is already the log of '{logs[log].name}'")
            logs.setdefault(log, spec)
        try:  # the build it serves: two directories may point to one (an index directory and its `current`)
            build = _real(resolve(spec.index))
        except ServiceError as exc:
            build = None
            if check_indexes:
                errors.append(f"{spec.where}: FAQ '{spec.name}': {exc.message}")
        if isinstance(build, Path) and build in builds and not same_directory:
            errors.append(f"{spec.where}: index {spec.index} serves the build of '{builds[build].name}' "
                          f"({builds[build].where}): each FAQ needs its own index directory")  # fmt: skip
        if isinstance(build, Path):
            builds.setdefault(build, spec)
    defaults = [s for s in specs if s.default]
    if len(defaults) > 1:
        errors.append(f"{defaults[1].where}: 'default = true' is already set for '{defaults[0].name}' "
                      f"({defaults[0].where}): one default FAQ")  # fmt: skip


def _check_key_scopes(settings: Settings, specs: list[FaqSpec]) -> list[str]:
    """A key limited to a FAQ this service does not serve is a mistake to say at start (the key is not shown)."""
    names = {s.name for s in specs}
    errors = []
    for n, scope in enumerate(settings.key_scopes().values(), start=1):
        unknown = sorted((scope or frozenset()) - names)
        if scope is not None and not scope:
            errors.append(f"FAQ_API_KEYS: key number {n} is limited to no FAQ (KEY:faq-a+faq-b)")
        if unknown:
            errors.append(f"FAQ_API_KEYS: key number {n} is limited to {', '.join(unknown)}, not a FAQ of this "
                          f"service ({', '.join(sorted(names))})")  # fmt: skip
    return errors


def save_snapshot(specs: list[FaqSpec], path: str | os.PathLike) -> None:
    """Write the FAQs served now (a worker that starts later, when the configuration on disk is broken, serves
    these instead of failing: ``load_snapshot``); whole or not at all."""
    path = Path(path)
    rows = [{"name": s.name, "index": str(s.index), "corpus": str(s.corpus) if s.corpus else None,
             "query_log": str(s.query_log) if s.query_log else None, "default": s.default, "where": s.where}
            for s in specs]  # fmt: skip
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rows), encoding="utf-8")
    os.replace(tmp, path)


def load_snapshot(path: str | os.PathLike) -> list[FaqSpec] | None:
    """The FAQs ``save_snapshot`` wrote, or None (none written, or unreadable)."""
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
        return [FaqSpec(r["name"], Path(r["index"]), Path(r["corpus"]) if r["corpus"] else None,
                        Path(r["query_log"]) if r["query_log"] else None, r["default"], r["where"])
                for r in rows] or None  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None
