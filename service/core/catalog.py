"""``FaqCatalog``: the FAQs one service serves, by name, and the search across several of them.

Each FAQ is a ``FaqService`` of its own (its engine, reloads, query log and review loop); the catalog gives them the
process's shared parts: one ``SearchGate`` (the search slots and the token budget are the CPU's, whatever the FAQ)
and one ``EmbedderPool`` (FAQs built with the same model encode with one encoder). A service of one FAQ is a catalog
of one: every route without a FAQ name serves the default FAQ.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ..errors import ErrorCode, Forbidden, InvalidRequest, NotFound, ServiceError, redact_paths
from ..search.admission import SearchGate
from ..search.engine_loading import EmbedderPool
from ..settings import Settings
from .faq_config import FaqConfigError, FaqSpec, faq_specs, save_snapshot
from .faq_service import FaqService, Observer
from .models import SearchRequest
from .reloader import install_sighup

log = logging.getLogger(__name__)

#: What ``faqs`` names to search every FAQ.
ALL = "*"


class FaqCatalog:
    """The running FAQs of a service, the default first.

    Args:
        settings: the service's settings (``Settings.from_env()`` by default); its ``config`` and ``faqs`` name the
            FAQs (``core/faq_config.py``), else the one of ``index`` and ``corpus``.
        specs: the FAQs, when the caller read them already.
        engines: ready engines by FAQ name (tests); the others are loaded.
        observer: makes each FAQ's observer, given its name (metrics).
        snapshot: a file the FAQs served are written to (the gunicorn server's run directory): a worker that starts
            while the configuration on disk is broken serves these (``faq_config.load_snapshot``).
    Raises:
        FaqConfigError: the FAQs named are not valid (every error listed).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        specs: list[FaqSpec] | None = None,
        engines: dict | None = None,
        observer: Callable[[str], Observer] | None = None,
        snapshot: str | os.PathLike | None = None,
    ):
        s = settings or Settings.from_env()
        specs = specs if specs is not None else faq_specs(s)
        gate = SearchGate(s.max_concurrent_searches, s.search_timeout, s.max_request_tokens)
        self._shared(s, specs, gate, EmbedderPool(), observer, snapshot)
        for spec in self.specs:
            self.services[spec.name] = self._service(spec, (engines or {}).get(spec.name))
        self.default = self.services[self.specs[0].name]

    def _shared(self, settings: Settings, specs: list[FaqSpec], gate: SearchGate, embedders: EmbedderPool,
                observer, snapshot) -> None:  # fmt: skip
        """What every catalog holds beside its services (``__init__`` and ``of``)."""
        self._base, self._observer, self.specs = settings, observer, specs
        self.gate, self.embedders = gate, embedders
        #: Where the FAQs served are written after each configuration that loads (``faq_config.save_snapshot``).
        self.snapshot = Path(snapshot) if snapshot else None
        #: Parts of every FAQ's ``health()`` a transport adds (HTTP's rate limit), FAQs added later included.
        self.health_extras: dict[str, Callable[[], dict]] = {}
        self._background = False
        self._master: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.services: dict[str, FaqService] = {}

    def _service(self, spec: FaqSpec, engine=None) -> FaqService:
        service = FaqService(
            spec.settings(self._base),
            engine,
            observer=self._observer(spec.name) if self._observer else None,
            name=spec.name,
            gate=self.gate,
            embedders=self.embedders,
        )
        service.health_extras = self.health_extras  # one dict: what a transport adds reaches every FAQ
        # A reload that signals the sibling workers makes them read the configuration again (their SIGHUP): this
        # worker does the same first, so that every worker serves the same FAQs.
        service.before_reload = self.reconfigure
        return service

    @classmethod
    def of(cls, service: FaqService) -> FaqCatalog:
        """A catalog of one ready service (tests, and callers that built their service themselves)."""
        catalog = cls.__new__(cls)
        spec = FaqSpec(service.name, service.settings.index, service.settings.corpus, service.settings.query_log,
                       default=True)  # fmt: skip
        catalog._shared(service.settings, [spec], service.gate, service.embedders, None, None)
        catalog.health_extras = service.health_extras
        catalog.services = {service.name: service}
        catalog.default = service
        return catalog

    def reconfigure(self) -> dict:
        """``_reconfigure``, any failure an outcome (``ok`` false with the reason): never raises."""
        try:
            return self._reconfigure()
        except Exception as exc:  # a configuration reload must never take down what serves
            log.exception("configuration reload failed")
            return {"ok": False, "errors": [f"{type(exc).__name__}: {exc}"], "kept": self.names,
                    "default": self.default.name}  # fmt: skip

    def _reconfigure(self) -> dict:
        """Read the FAQs the configuration names again (``FAQ_CONFIG``'s file may have changed) and serve them: the
        new ones are loaded, the ones gone are closed, the others keep serving untouched (one whose index, corpus or
        query log changed is loaded anew). A configuration that is not valid, or a new FAQ that does not load, is
        refused whole: the FAQs served stay as they were.

        Returns:
            ``{"ok", "added", "replaced", "removed", "kept", "default"[, "errors"]}`` (``replaced``: FAQs loaded anew
            because their index, corpus or query log changed).
        """
        with self._lock:
            if not self._base.config and not self._base.faqs:  # one FAQ of FAQ_INDEX: nothing to read again
                return {"ok": True, "added": [], "replaced": [], "removed": [], "kept": self.names,
                        "default": self.default.name}  # fmt: skip
            try:
                specs = faq_specs(self._base)
            except FaqConfigError as exc:
                log.error("configuration reload refused: %s", exc)
                return {"ok": False, "errors": exc.errors, "kept": self.names, "default": self.default.name}
            old = {spec.name: spec for spec in self.specs}
            services: dict[str, FaqService] = {}
            added = []
            for spec in specs:
                before = old.get(spec.name)
                if before is not None and _same_place(before, spec):
                    services[spec.name] = self.services[spec.name]
                    continue
                service = self._service(spec)
                if service.current_engine is None:  # nothing served half-way
                    for made in [*(services[n] for n in added), service]:
                        made.close()
                    message = service.failure.message if service.failure else "no index"
                    log.error("configuration reload refused: FAQ '%s': %s", spec.name, message)
                    return {"ok": False, "errors": [f"{spec.where}: FAQ '{spec.name}': {message}"],
                            "kept": self.names, "default": self.default.name}  # fmt: skip
                services[spec.name] = service
                added.append(spec.name)
            gone = [s for name, s in self.services.items() if services.get(name) is not s]
            for name in added:
                self._start(services[name])
            self.specs, self.services = specs, services  # one assignment each: a request sees the old or the new
            self.save_snapshot()
            self.default = services[specs[0].name]
            for service in gone:
                service.close()
                service.observer.gone()
            outcome = {"ok": True, "added": [n for n in added if n not in old],
                       "replaced": [n for n in added if n in old],
                       "removed": [s.name for s in gone if s.name not in services],
                       "kept": [n for n in services if n not in added], "default": self.default.name}  # fmt: skip
            if added or gone:
                log.info("configuration reloaded: %s", outcome)
            return outcome

    def _start(self, service: FaqService) -> None:
        """What the FAQs already running do in this process: the sibling workers to signal, the upkeep."""
        service.reloader.gunicorn_master = self._master
        if self._background:
            service.start_background()

    def save_snapshot(self) -> None:
        """Write the FAQs served now to ``snapshot`` (if any; a failure is logged, never raised)."""
        if self.snapshot is None:
            return
        try:
            save_snapshot(self.specs, self.snapshot)
        except OSError as exc:
            log.warning("could not write the FAQs served to %s: %s", self.snapshot, exc)

    # ---- the FAQs ----

    @property
    def settings(self) -> Settings:
        """The service-wide settings (keys, limits, the server): the default FAQ's, which every FAQ shares but for
        its index, corpus and query log."""
        return self.default.settings

    @property
    def names(self) -> list[str]:
        """The FAQs' names, the default first."""
        return list(self.services)

    def get(self, name: str | None, allowed: frozenset[str] | None = None, reveal: bool = True) -> FaqService:
        """The FAQ of that name (None: the default).

        Args:
            allowed: the FAQs the caller's API key may use (None: all of them).
            reveal: whether an unknown name's error may list the FAQs served (not to a caller without a key).
        Raises:
            NotFound: ``unknown_faq``, with the names this service serves (those the caller may use).
            Forbidden: ``faq_forbidden``: the caller's key is limited to other FAQs.
        """
        service = self.default if name is None else self.services.get(name)
        if service is None:
            shown = name if len(name) <= 64 else name[:61] + "…"
            served = ", ".join(self.visible(allowed)) or "none to this key"
            raise NotFound(
                f"no FAQ named {shown!r}" + (f"; this service serves: {served}" if reveal else ""),
                code=ErrorCode.UNKNOWN_FAQ,
                field="faq",
            )
        if allowed is not None and service.name not in allowed:
            raise Forbidden(
                f"this API key may not use the FAQ '{service.name}'; it may use: "
                f"{', '.join(self.visible(allowed)) or 'none of this service'}",
                field="faq",
            )
        return service

    def visible(self, allowed: frozenset[str] | None = None) -> list[str]:
        """The FAQs' names a caller may use (``allowed``: its key's; None: all), the default first."""
        return [name for name in self.services if allowed is None or name in allowed]

    def listing(self, allowed: frozenset[str] | None = None) -> dict:
        """``GET /faqs``: each FAQ's name, identity, entries, index and whether it is ready (those the caller's key
        may use)."""
        out = []
        for name, service in self.services.items():
            if allowed is not None and name not in allowed:
                continue
            engine = service.current_engine
            item = {"name": name, "default": service is self.default, "ready": engine is not None}
            if engine is not None:
                item.update(
                    faq=engine.index.identity.to_dict(),
                    entries=len(engine.index.entries),
                    index_id=engine.index.index_id,
                    model=engine.index.manifest.model.name,
                )
            else:
                failure = service.failure
                item["error"] = {"code": failure.code if failure else ErrorCode.INDEX_UNAVAILABLE,
                                 "message": "no index is loaded"}  # fmt: skip
            out.append(item)
        default = self.default.name if allowed is None or self.default.name in allowed else None
        return {"default": default, "faqs": out}

    def health_summary(self) -> dict:
        """``/health``'s ``faqs``: each FAQ ready or not, its index and its last reload."""
        out = {}
        for name, service in self.services.items():
            engine = service.current_engine
            out[name] = {
                "ready": engine is not None,
                "index_id": engine.index.index_id if engine is not None else None,
                "last_reload": service.reloader.last,
            }
        return redact_paths(out)  # open to anyone: a refused build's reason without paths

    def resolve(self, names: list[str], allowed: frozenset[str] | None = None) -> list[FaqService]:
        """The FAQs a search across names (``"*"``: all of them the caller may use), in the catalog's order, each once.

        Raises:
            InvalidRequest: an empty list. NotFound: ``unknown_faq``. Forbidden: ``faq_forbidden``.
        """
        if not names:
            raise InvalidRequest("'faqs' is empty: name at least one FAQ, or \"*\" for all",
                                 code=ErrorCode.OUT_OF_RANGE, field="faqs")  # fmt: skip
        wanted = {self.get(name, allowed).name for name in names if name != ALL}  # each checked, "*" beside it or not
        if ALL in names:
            usable = [self.services[name] for name in self.visible(allowed)]
            if not usable:
                raise Forbidden("this API key may use none of this service's FAQs", field="faqs")
            return usable
        return [service for name, service in self.services.items() if name in wanted]

    # ---- searching across FAQs ----

    def search_across(
        self,
        request: SearchRequest,
        names: list[str],
        request_id: str | None = None,
        client: str | None = None,
        arrived: float | None = None,
        allowed: frozenset[str] | None = None,
        tokens: int | None = None,
    ) -> dict:
        """One search in several FAQs, one ranked list: each FAQ's results in its own order, merged by calibrated
        score; ``answered`` and ``reason`` are those of the FAQ whose first result leads (named in ``faq``).

        The query is encoded once per encoder (FAQs built with the same model share it), within one search slot and
        the token budget. A FAQ with no index loaded is left out and named in ``unavailable``. The search is logged in
        the leading FAQ's query log (with its own answer), where its feedback goes.

        Args:
            tokens: the tokens already counted against the request's budget (a batch counts all its queries first).

        Raises:
            InvalidRequest, NotFound: the names. ServiceError: no FAQ named has an index loaded.
        """
        started = time.perf_counter()
        services = self.resolve(names, allowed)
        ready = [(s, s.current_engine) for s in services if s.current_engine is not None]
        if not ready:
            raise _fresh(services[0])
        if tokens is None:
            tokens = self.gate.tokens(ready[0][1], [request.query])
        if request.filter is not None:  # each FAQ keeps what its entries match; a field none of them has is an error
            ready[0][1].filters.keep(request.filter, strict=False)  # its shape, refused before the search waits
            named = set(request.filter) - {n for _, engine in ready for n in engine.filters.names}
            if named:
                raise InvalidRequest(
                    f"no entry of these FAQs has the field {sorted(named)[0][:64]!r} to filter on",
                    code=ErrorCode.UNKNOWN_FILTER_FIELD,
                    field="filter",
                )

        def work():
            vectors: dict[int, object] = {}
            outcomes = []
            for _, engine in ready:
                key = id(engine.embedder)
                if key not in vectors:
                    vectors[key] = engine.embedder.encode([request.query], kind="query")[0]
                outcomes.append(engine.search_encoded(request.query, vectors[key], request.top_k, request.min_score,
                                                      started, filter=request.filter, strict=False))  # fmt: skip
            return outcomes

        deadline = None if arrived is None else arrived + self.gate.timeout  # (FaqService.search's ``arrived``)
        outcomes = self.gate.run(work, tokens, deadline)
        request_id = request_id or uuid.uuid4().hex
        # A k-way merge keeps each FAQ's order (its first result is the one its decision is about).
        streams = [[(-r.score, i, n, r) for n, r in enumerate(o.results)] for i, o in enumerate(outcomes)]
        merged = list(heapq.merge(*streams))[: request.top_k]
        lead = merged[0][1] if merged else 0
        best, best_service = outcomes[lead], ready[lead][0]
        results = []
        for rank, (_, i, _, result) in enumerate(merged, start=1):
            results.append({**asdict(result), "rank": rank, "faq": ready[i][0].name})
        # The leading FAQ's log only: a question another FAQ answered is no gap of the others (and one none answered
        # is a gap of the closest); feedback on the search goes to that FAQ.
        best_service._log(request_id, request.query, best.to_dict(), client)
        return {
            "query": best.query,
            "answered": best.answered,
            "reason": best.reason,
            "faq": best_service.name,
            "faqs": [s.name for s, _ in ready],
            "unavailable": [s.name for s in services if s.current_engine is None],
            "min_score": best.min_score,
            "results": results,
            "index": best.index,
            "took_ms": round((time.perf_counter() - started) * 1000, 2),
            "request_id": request_id,
        }

    def search_batch(
        self,
        items: list,
        name: str | None = None,
        request_id: str | None = None,
        client: str | None = None,
        allowed: frozenset[str] | None = None,
    ) -> dict:
        """A batch in the FAQ ``name`` (None: the default) whose queries may each search across FAQs (their
        ``faqs``): one token budget for every query of the request, and one deadline for its waits.

        Raises:
            PayloadTooLarge: ``too_many_tokens`` (the whole batch). NotFound, Forbidden: ``name``.
        """
        started = time.monotonic()
        valid = [item for item in items if isinstance(item, SearchRequest)]
        across = {i for i, item in enumerate(items) if isinstance(item, SearchRequest) and item.faqs is not None}
        plain = len(valid) > len(across)
        service = self.get(name, allowed) if plain or not across else None
        counter = service.current_engine if service is not None else None
        counter = counter or next((s.current_engine for s in self.services.values() if s.current_engine), None)
        if counter is not None and valid:
            self.gate.tokens(counter, [item.query for item in valid])  # the request's budget, across items included
        request_id = request_id or uuid.uuid4().hex
        if service is not None:
            mine = [item if i not in across else InvalidRequest("searched across FAQs") for i, item in enumerate(items)]
            body = service.search_batch(mine, request_id, client, arrived=started)
        else:
            body = {"results": [None] * len(items), "request_id": request_id}
        for i in sorted(across):
            try:
                body["results"][i] = self.search_across(items[i], items[i].faqs, request_id, client, arrived=started,
                                                        allowed=allowed, tokens=0)  # fmt: skip
            except ServiceError as exc:
                if exc.status >= 500 or exc.code == ErrorCode.TOO_MANY_TOKENS:
                    raise
                body["results"][i] = exc.to_dict()
        body["took_ms"] = round((time.monotonic() - started) * 1000, 2)
        return body

    # ---- running ----

    def install_sighup(self) -> bool:
        """On SIGHUP, the configuration is read again (``reconfigure``) and every FAQ switches to its current build
        (the main thread only)."""

        def on_signal() -> None:
            try:
                self.reconfigure()
                self.reload("sighup", siblings=False)
            except Exception:  # the listener outlives anything one signal meets
                log.exception("SIGHUP: the reload failed; still listening")

        return install_sighup(on_signal, self._stop)

    def reload(self, trigger: str = "admin", force: bool = False, siblings: bool = True) -> dict:
        """Every FAQ reloads (``FaqService.reload``); the sibling workers are signalled once."""
        outcomes = {name: s.reloader.reload(trigger, force=force) for name, s in self.services.items()}
        signalled = self.default.reloader.signal_siblings() if siblings else 0
        return {"faqs": outcomes, "signalled_workers": signalled}

    def set_gunicorn_master(self, pid: int) -> None:
        """Each FAQ's reloader signals the sibling workers of this master."""
        self._master = pid
        for service in self.services.values():
            service.reloader.gunicorn_master = pid

    def catch_up(self) -> None:
        """Once a worker listens to SIGHUP: the configuration as it is now (a reload signal sent while the worker was
        loading was ignored), then each FAQ switches to a build published meanwhile."""
        self.reconfigure()
        for service in self.services.values():
            service.reloader.catch_up()

    def start_background(self) -> None:
        """Each FAQ's learning loop upkeep (those with a query log)."""
        self._background = True
        for service in self.services.values():
            service.start_background()

    def close(self, timeout: float = 5.0) -> None:
        """Stop every FAQ's watchers and write their query logs."""
        self._stop.set()
        for service in self.services.values():
            service.close(timeout)


def _fresh(service: FaqService) -> ServiceError:
    try:
        service.engine  # noqa: B018 - raises the reason it has no engine
    except ServiceError as exc:
        return exc
    return ServiceError("no index is loaded")


def _same_place(a: FaqSpec, b: FaqSpec) -> bool:
    """Whether two specs of a FAQ serve the same index with the same corpus and query log (its service is kept)."""
    try:
        return (a.index.resolve(), a.corpus, a.query_log) == (b.index.resolve(), b.corpus, b.query_log)
    except (OSError, RuntimeError, ValueError):
        return False
