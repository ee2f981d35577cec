"""``FaqCatalog``: the FAQs one service serves, by name, and the search across several of them.

Each FAQ is a ``FaqService`` of its own (its engine, reloads, query log and review loop); the catalog gives them the
process's shared parts: one ``SearchGate`` (the search slots and the token budget are the CPU's, whatever the FAQ)
and one ``EmbedderPool`` (FAQs built with the same model encode with one encoder). A service of one FAQ is a catalog
of one: every route without a FAQ name serves the default FAQ.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict

from ..errors import ErrorCode, InvalidRequest, NotFound, ServiceError, redact_paths
from ..search.admission import SearchGate
from ..search.engine_loading import EmbedderPool
from ..settings import Settings
from .faq_config import FaqSpec, faq_specs
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
    Raises:
        FaqConfigError: the FAQs named are not valid (every error listed).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        specs: list[FaqSpec] | None = None,
        engines: dict | None = None,
        observer: Callable[[str], Observer] | None = None,
    ):
        s = settings or Settings.from_env()
        self.specs = specs if specs is not None else faq_specs(s)
        self.gate = SearchGate(s.max_concurrent_searches, s.search_timeout, s.max_request_tokens)
        self.embedders = EmbedderPool()
        self.services: dict[str, FaqService] = {}
        for spec in self.specs:
            self.services[spec.name] = FaqService(
                spec.settings(s),
                (engines or {}).get(spec.name),
                observer=observer(spec.name) if observer else None,
                name=spec.name,
                gate=self.gate,
                embedders=self.embedders,
            )
        self.default = self.services[self.specs[0].name]
        self._stop = threading.Event()

    @classmethod
    def of(cls, service: FaqService) -> FaqCatalog:
        """A catalog of one ready service (tests, and callers that built their service themselves)."""
        catalog = cls.__new__(cls)
        catalog.specs = [FaqSpec(service.name, service.settings.index, service.settings.corpus,
                                 service.settings.query_log, default=True)]  # fmt: skip
        catalog.gate, catalog.embedders = service.gate, service.embedders
        catalog.services = {service.name: service}
        catalog.default = service
        catalog._stop = threading.Event()
        return catalog

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

    def get(self, name: str | None) -> FaqService:
        """The FAQ of that name (None: the default).

        Raises:
            NotFound: ``unknown_faq``, with the names this service serves.
        """
        if name is None:
            return self.default
        service = self.services.get(name)
        if service is None:
            shown = name if len(name) <= 64 else name[:61] + "…"
            raise NotFound(
                f"no FAQ named {shown!r}; this service serves: {', '.join(self.names)}",
                code=ErrorCode.UNKNOWN_FAQ,
                field="faq",
            )
        return service

    def listing(self) -> dict:
        """``GET /faqs``: each FAQ's name, identity, entries, index and whether it is ready."""
        out = []
        for name, service in self.services.items():
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
        return {"default": self.default.name, "faqs": out}

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

    def resolve(self, names: list[str]) -> list[FaqService]:
        """The FAQs a search across names (``"*"``: all of them), in the catalog's order, each once.

        Raises:
            InvalidRequest: an empty list. NotFound: ``unknown_faq``.
        """
        if not names:
            raise InvalidRequest("'faqs' is empty: name at least one FAQ, or \"*\" for all",
                                 code=ErrorCode.OUT_OF_RANGE, field="faqs")  # fmt: skip
        if ALL in names:
            return list(self.services.values())
        wanted = {self.get(name).name for name in names}
        return [service for name, service in self.services.items() if name in wanted]

    # ---- searching across FAQs ----

    def search_across(
        self,
        request: SearchRequest,
        names: list[str],
        request_id: str | None = None,
        client: str | None = None,
        arrived: float | None = None,
    ) -> dict:
        """One search in several FAQs, one ranked list: each FAQ's results in its own order, merged by calibrated
        score; ``answered`` and ``reason`` are those of the FAQ whose first result leads (named in ``faq``).

        The query is encoded once per encoder (FAQs built with the same model share it), within one search slot and
        the token budget. A FAQ with no index loaded is left out and named in ``unavailable``.

        Raises:
            InvalidRequest, NotFound: the names. ServiceError: no FAQ named has an index loaded.
        """
        started = time.perf_counter()
        services = self.resolve(names)
        ready = [(s, s.current_engine) for s in services if s.current_engine is not None]
        if not ready:
            raise _fresh(services[0])
        tokens = self.gate.tokens(ready[0][1], [request.query])

        def work():
            vectors: dict[int, object] = {}
            outcomes = []
            for _, engine in ready:
                key = id(engine.embedder)
                if key not in vectors:
                    vectors[key] = engine.embedder.encode([request.query], kind="query")[0]
                outcomes.append(engine.search_encoded(request.query, vectors[key], request.top_k, request.min_score,
                                                      started))  # fmt: skip
            return outcomes

        deadline = None if arrived is None else arrived + self.gate.timeout  # (FaqService.search's ``arrived``)
        outcomes = self.gate.run(work, tokens, deadline)
        request_id = request_id or uuid.uuid4().hex
        for (service, _), outcome in zip(ready, outcomes, strict=True):
            service._log(request_id, request.query, outcome.to_dict(), client)  # each FAQ's log: its own answer
        # A k-way merge keeps each FAQ's order (its first result is the one its decision is about).
        streams = [[(-r.score, i, n, r) for n, r in enumerate(o.results)] for i, o in enumerate(outcomes)]
        merged = list(heapq.merge(*streams))[: request.top_k]
        lead = merged[0][1] if merged else 0
        best, best_service = outcomes[lead], ready[lead][0]
        results = []
        for rank, (_, i, _, result) in enumerate(merged, start=1):
            results.append({**asdict(result), "rank": rank, "faq": ready[i][0].name})
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

    # ---- running ----

    def install_sighup(self) -> bool:
        """Every FAQ switches to its current build on SIGHUP (the main thread only)."""
        return install_sighup(lambda: self.reload("sighup", siblings=False), self._stop)

    def reload(self, trigger: str = "admin", force: bool = False, siblings: bool = True) -> dict:
        """Every FAQ reloads (``FaqService.reload``); the sibling workers are signalled once."""
        outcomes = {name: s.reloader.reload(trigger, force=force) for name, s in self.services.items()}
        signalled = self.default.reloader.signal_siblings() if siblings else 0
        return {"faqs": outcomes, "signalled_workers": signalled}

    def set_gunicorn_master(self, pid: int) -> None:
        """Each FAQ's reloader signals the sibling workers of this master."""
        for service in self.services.values():
            service.reloader.gunicorn_master = pid

    def catch_up(self) -> None:
        """Each FAQ switches to a build published while this worker was loading."""
        for service in self.services.values():
            service.reloader.catch_up()

    def start_background(self) -> None:
        """Each FAQ's learning loop upkeep (those with a query log)."""
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
