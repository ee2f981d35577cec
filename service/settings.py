"""The service's settings: every ``FAQ_*`` environment variable in one typed object, with one default each.

``Settings.from_env()`` reads the environment (``FAQ_<NAME>`` for the field ``<name>``; an empty value counts as
unset); each entry point reads it once and passes it down: the app factory, gunicorn's settings, the CLI, the MCP
server and the cluster. A test or a caller overrides fields by name (``Settings.from_env(query_log=…)``) or with
the variables' names (``Settings.from_mapping({"FAQ_QUERY_LOG": …})``). docs/operations.md's configuration table
lists every variable (``tests/test_settings.py`` checks it against these fields).

This is the one module that touches ``os.environ``: besides the ``FAQ_*`` variables, the process-level ones of the
libraries the service runs on (``PROMETHEUS_MULTIPROC_DIR`` for the workers' metrics) and the environment given to
the processes the service starts (gunicorn, the cluster's replicas, the review builds).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The checkout the package runs from (an editable install): default corpus, models and index live here.
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The converted model written by ``faq-search prepare-model`` (``make model``).
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "multilingual-e5-small"
#: How the production server is started (after ``python -m gunicorn``): the service's settings and its WSGI app.
GUNICORN_ARGS = ["-c", "python:service.http.gunicorn_conf", "service.http.wsgi:app"]


#: The longest wait a setting in seconds may name (a search slot, a request body, the index watcher): an hour.
MAX_SECONDS = 3600.0
#: The log levels ``FAQ_LOG_LEVEL`` may name.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: ``FAQ_*`` variables that are not the service's settings (documented in docs/operations.md all the same).
OTHER_VARIABLES = {"FAQ_CHROMIUM": "the browser the search-page test drives (tests only)"}


class SettingsError(ValueError):
    """An environment variable or option that is not a valid value; the message names it."""


class Settings(BaseSettings):
    """Every setting of the service; the environment variable of ``name`` is ``FAQ_NAME``."""

    model_config = SettingsConfigDict(
        env_prefix="FAQ_",
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    # ---- the index, the model, the corpus ----
    model: str | None = Field(
        None, description="model directory or sentence-transformers name (None: the converted e5)"
    )
    index: Path = Field(
        REPO_ROOT / "index", description="the index directory (a relative path: from the working directory)"
    )
    corpus: Path = Field(
        REPO_ROOT / "corpus" / "chorus_pro_faq.jsonl",
        description="the corpus the index is built from; the review queue writes its decisions beside it, and the "
        "entries API rewrites it",
    )
    config: Path | None = Field(
        None, description="a TOML file naming the FAQs to serve (docs/faqs.md); None: the one FAQ of index and corpus"
    )
    faqs: str | None = Field(
        None, description="FAQs to serve as NAME=INDEX_DIR, comma-separated (what `serve --faq` passes on)"
    )
    backend: Literal["auto", "torch", "onnx", "onnx-int8"] | None = Field(
        None, description="query encoder: torch, onnx, onnx-int8 (auto: by the model directory); None: the index's own"
    )
    encoder_threads: int | None = Field(
        None,
        ge=1,
        validation_alias=AliasChoices("FAQ_ENCODER_THREADS", "FAQ_TORCH_THREADS"),
        description="threads of the encoder (gunicorn sets it per worker; None: the library's default)",
    )
    # ---- what a request may ask ----
    min_score: float | None = Field(None, ge=0, le=1, description="answer threshold; None: the manifest's")
    max_query_chars: int = Field(1000, ge=1, description="the longest query")
    max_request_tokens: int = Field(4096, ge=1, description="tokens the encoder may read for one request")
    max_body_bytes: int = Field(256 * 1024, ge=1, description="the largest request body")
    max_concurrent_searches: int = Field(2, ge=1, description="searches running at once in one process")
    search_timeout: float = Field(10.0, gt=0, le=MAX_SECONDS, description="seconds a search may wait for a slot")
    body_timeout: float = Field(
        10.0, gt=0, le=MAX_SECONDS, description="seconds a request body may take to arrive (gevent)"
    )
    cache_size: int = Field(1024, ge=0, description="responses kept for repeated questions (0: no cache)")
    cors_origins: str | None = Field(None, description="browser origins allowed to call the API")
    # ---- who may call ----
    admin_token: str | None = Field(None, description="bearer token of /admin/*; None: admin disabled")
    api_keys: str | None = Field(
        None, description="comma-separated keys the search routes require (KEY:faq-a+faq-b: only those FAQs)"
    )
    api_key: str | None = Field(None, description="the key `faq-search mcp --url` sends to a service")
    rate_limit: str | None = Field(None, description="per-client limit on the search routes, e.g. 600/minute")
    rate_limit_storage: str | None = Field(None, description="the rate limit's shared store (redis://…)")
    proxy_hops: int = Field(0, ge=0, description="proxies in front whose X-Forwarded-For names the client")
    replica_name: str | None = Field(None, description="this replica's name in X-Served-By")
    # ---- the running index ----
    watch_seconds: float = Field(0.0, ge=0, le=MAX_SECONDS, description="poll index/current this often (0: off)")
    # ---- the query log and the review loop ----
    query_log: Path | None = Field(None, description="SQLite file of the query log; None: nothing is kept")
    query_log_days: float = Field(30.0, description="days the query log keeps")
    query_log_max_mb: float | None = Field(500.0, description="the query log's content at most (MB)")
    log_queries: int = Field(0, ge=0, description="log each query cut to this many characters (0: never)")
    # ---- the server ----
    host: str = Field("127.0.0.1", description="the address the service listens on")
    port: int = Field(8000, ge=1, le=65535, description="its port")
    workers: int | None = Field(None, ge=1, description="gunicorn workers (None: one per core)")
    worker_class: Literal["gevent", "gthread", "sync"] = Field("gevent", description="gunicorn's worker class")
    worker_connections: int = Field(1000, ge=1, description="open connections per gevent worker")
    threads: int = Field(2, ge=1, description="threads per gthread worker")
    worker_timeout: int = Field(120, ge=1, description="seconds a worker may stay silent")
    control_socket: str | None = Field(None, description="gunicorn's control socket (None: one per port)")
    access_log: str | None = Field(None, description="gunicorn's access log: a path, or - for stderr")
    log_level: str = Field("info", description="log level: debug, info, warning, error or critical")
    log_format: Literal["json", "text"] = Field("json", description="json or text")
    preload_encoder: bool = Field(True, description="the master loads the ONNX encoder the workers share")
    preload_tokenizer: bool = Field(True, description="the master loads the tokenizer the workers share")
    # ---- measuring, the cluster ----
    eval_data: Path = Field(REPO_ROOT.parent / "shared" / "data", description="the public evaluation sets")
    replicas: int = Field(3, ge=1, description="cluster replicas (`make cluster` passes its REPLICAS)")
    publish_dir: Path | None = Field(None, description="the index directory the cluster's replicas serve")
    cluster_dir: Path = Field(Path(".cluster"), description="the cluster's run directory")
    front_port: int = Field(8080, ge=1, le=65535, description="HAProxy's port")
    first_replica_port: int = Field(8101, ge=1, le=65535, description="the first replica's port")
    workers_per_replica: int = Field(1, ge=1, description="gunicorn workers per replica")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.lower()

    @field_validator("rate_limit")
    @classmethod
    def _limit(cls, value: str | None) -> str | None:
        if value is not None:
            import limits  # the rate limit's own parser: what it refuses would disable the limit at run time

            try:
                limits.parse_many(value)
            except ValueError:
                raise ValueError("must be a limit such as 600/minute (or several, separated by ;)") from None
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        if value is not None:
            from limits.storage import SCHEMES

            scheme = value.split("://", 1)[0] if "://" in value else ""
            if scheme not in SCHEMES or scheme.startswith("async+"):
                raise ValueError("must be a storage URL such as redis://host:6379/0 or memory://")
        return value

    @field_validator("query_log_days")
    @classmethod
    def _days(cls, value: float) -> float:
        if not 0 < value <= 36_500:  # NaN fails too
            raise ValueError("must be a number of days from 0 to 36500")
        return value

    @field_validator("query_log_max_mb")
    @classmethod
    def _size(cls, value: float | None) -> float | None:
        if value == 0:  # 0: no bound (as before the settings object)
            return None
        if value is not None and not 1 <= value <= 10**7:
            raise ValueError("must be a number of megabytes from 1 to 10000000, or 0 for no bound")
        return value

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """The settings of the environment, then ``overrides`` (field names; None values are left out).

        Raises:
            SettingsError: a variable or an override is not a valid value (its name and the reason).
        """
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise SettingsError(_explain(exc)) from None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, **overrides: Any) -> Settings:
        """The settings of the environment, then ``values`` given by variable name (``{"FAQ_QUERY_LOG": …}``;
        other keys are ignored), then ``overrides``."""
        named = {name[4:].lower(): v for name, v in (values or {}).items() if name.startswith("FAQ_")}
        return cls.from_env(**named, **overrides)

    @staticmethod
    def variable(name: str) -> str:
        """The environment variable of field ``name``."""
        alias = Settings.model_fields[name].validation_alias
        return alias.choices[0] if isinstance(alias, AliasChoices) else f"FAQ_{name.upper()}"

    @classmethod
    def variables(cls) -> list[str]:
        """Every environment variable read here (old names included)."""
        out = []
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            names = (
                [c for c in alias.choices if c.isupper()] if isinstance(alias, AliasChoices) else [cls.variable(name)]
            )
            out.extend(names)
        return out

    @classmethod
    def unknown_variables(cls, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
        """``FAQ_*`` variables of the environment that are no setting (a misspelt name is otherwise ignored), each
        with the setting it most resembles (None: none)."""
        import difflib

        known = set(cls.variables())
        environ = os.environ if environ is None else environ
        return {
            name: next(iter(difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)), None)
            for name in sorted(environ)
            if name.startswith("FAQ_") and name not in known and name not in OTHER_VARIABLES
        }

    def model_or_default(self) -> str:
        """``model``, else the converted model's directory."""
        return self.model or str(DEFAULT_MODEL_DIR)

    def key_list(self) -> list[str]:
        """``api_keys`` as a list of keys (without the FAQs a key may be limited to: ``key_scopes``)."""
        return list(self.key_scopes())

    def key_scopes(self) -> dict[str, frozenset[str] | None]:
        """Each API key and the FAQs it may use (``KEY:faq-a+faq-b``), None for every FAQ."""
        from .access import key_scopes

        return key_scopes(self.api_keys)


def unknown_variable_warnings() -> list[str]:
    """One line per ``FAQ_*`` variable of the environment that is no setting, for an entry point to print."""
    return [
        f"warning: {name} is not a setting of the service, ignored" + (f" (did you mean {near}?)" if near else "")
        for name, near in Settings.unknown_variables().items()
    ]


def child_environment(variables: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, str]:
    """This process's environment for a process the service starts (gunicorn, a replica, a benchmark's server): the
    given fields set as their variables (None: left as they are), then ``variables`` by name (None: removed)."""
    env = dict(os.environ)
    for name, value in fields.items():
        if value is not None:
            env[Settings.variable(name)] = str(value)
    for name, value in (variables or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def _explain(exc: ValidationError) -> str:
    """The first error of a validation, as "FAQ_X='value' is not …"."""
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else "?"
    variable = Settings.variable(name) if name in Settings.model_fields else name
    value = err.get("input")
    return f"{variable}={value!r} is not valid: {err['msg']}"


def export(**fields: Any) -> None:
    """Set the variables of these fields in this process's environment, for the processes it becomes or starts (the
    ``faq-search serve`` options, before it becomes gunicorn)."""
    for name, value in fields.items():
        if value is not None:
            os.environ[Settings.variable(name)] = str(value)


# ---- variables of the libraries the service runs on ----


def metrics_dir() -> str | None:
    """Where gunicorn's workers keep their metrics (prometheus_client's ``PROMETHEUS_MULTIPROC_DIR``)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def set_metrics_dir(path: str) -> None:
    """Set prometheus_client's ``PROMETHEUS_MULTIPROC_DIR`` (before the workers start)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
