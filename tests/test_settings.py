"""The settings: one typed object reads every ``FAQ_*`` variable (``service/settings.py``), docs/operations.md's
table documents exactly those, and nothing else in the package reads the environment."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

from service.settings import OTHER_VARIABLES, Settings, SettingsError

#: Variables the table documents that the service does not read (the tests' browser).
NOT_SETTINGS = set(OTHER_VARIABLES)


def _documented() -> set[str]:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text[text.index("## Configuration") :]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split(" | ")[0])}


def test_the_configuration_table_documents_every_setting_and_only_those():
    documented, read = _documented(), set(Settings.variables())
    assert read - documented == set(), "settings the table does not document"
    assert documented - read - NOT_SETTINGS == set(), "the table documents variables nothing reads"
    assert len(read) >= 45


def test_nothing_but_the_settings_module_reads_the_environment():
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "service").rglob("*.py")
        if path.name != "settings.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(r"os\.environ|os\.getenv|getenv\(", line)
    ]
    assert offenders == []


def test_one_default_each_and_a_bad_value_names_its_variable(monkeypatch):
    for name in list(Settings.variables()):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert settings.index == ROOT / "index" and settings.port == 8000 and settings.replicas == 3
    monkeypatch.setenv("FAQ_PORT", "huit mille")
    with pytest.raises(SettingsError, match="FAQ_PORT='huit mille'"):
        Settings.from_env()
    monkeypatch.setenv("FAQ_PORT", "")  # empty: unset
    assert Settings.from_env().port == 8000
    monkeypatch.setenv("FAQ_TORCH_THREADS", "3")  # the older name is still read
    assert Settings.from_env().encoder_threads == 3
    monkeypatch.setenv("FAQ_NO_SUCH_SETTING", "1")  # an unknown FAQ_ variable is not an error (other tools' own)
    assert Settings.from_env(cache_size=7).cache_size == 7


def test_the_cluster_and_the_settings_share_their_defaults():
    from service.deploy.cluster import ClusterSpec

    spec = ClusterSpec()
    default = {name: info.default for name, info in Settings.model_fields.items()}
    assert spec.run_dir == default["cluster_dir"].resolve()
    assert (spec.replicas, spec.front_port, spec.first_replica_port, spec.workers_per_replica) == (
        default["replicas"], default["front_port"], default["first_replica_port"], default["workers_per_replica"],
    )  # fmt: skip


@pytest.mark.parametrize(
    "variable,value",
    [("FAQ_SEARCH_TIMEOUT", "inf"), ("FAQ_SEARCH_TIMEOUT", "nan"), ("FAQ_BODY_TIMEOUT", "1e12"),
     ("FAQ_WATCH_SECONDS", "inf"), ("FAQ_RATE_LIMIT", "garbage"), ("FAQ_RATE_LIMIT_STORAGE", "garbage"),
     ("FAQ_RATE_LIMIT_STORAGE", "async+redis://x"), ("FAQ_LOG_LEVEL", "LOUD"), ("FAQ_LOG_FORMAT", "xml"),
     ("FAQ_WORKER_CLASS", "foo"), ("FAQ_BACKEND", "cuda")],
)  # fmt: skip
def test_a_value_that_would_fail_or_be_ignored_at_run_time_is_refused_at_start(monkeypatch, variable, value):
    """An infinite wait overflows the slot's timer, an unparsable rate limit disables the limit (flask-limiter
    swallows the error), a bad level or worker class stops gunicorn with a traceback: refused before anything
    starts, naming the variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"^{variable}="):
        Settings.from_env()


def test_good_values_of_those_settings_are_kept(monkeypatch):
    for variable, value in {
        "FAQ_RATE_LIMIT": "600/minute;10/second",
        "FAQ_RATE_LIMIT_STORAGE": "redis+unix:///x.sock",
        "FAQ_LOG_LEVEL": "DEBUG",
        "FAQ_BACKEND": "onnx-int8",
        "FAQ_SEARCH_TIMEOUT": "3600",
    }.items():
        monkeypatch.setenv(variable, value)  # fmt: skip
    settings = Settings.from_env()
    assert (settings.log_level, settings.backend, settings.search_timeout) == ("debug", "onnx-int8", 3600.0)


def test_a_misspelt_variable_is_warned_about_with_the_setting_it_resembles(monkeypatch, capsys):
    from service import cli

    monkeypatch.setenv("FAQ_CACHESIZE", "5")
    monkeypatch.setenv("FAQ_CHROMIUM", "/usr/bin/chromium")  # documented, not a setting: no warning
    assert Settings.unknown_variables() == {"FAQ_CACHESIZE": "FAQ_CACHE_SIZE"}
    monkeypatch.setattr(cli, "_warned", [])
    assert cli.settings_or_exit().cache_size == 1024
    cli.settings_or_exit()
    err = capsys.readouterr().err
    assert err.count("FAQ_CACHESIZE is not a setting of the service, ignored (did you mean FAQ_CACHE_SIZE?)") == 1


def test_only_the_documented_names_are_read(monkeypatch):
    """Bare names another program may set (ENCODER_THREADS, REPLICAS) are not the service's; the older
    FAQ_TORCH_THREADS still is, and FAQ_QUERY_LOG_MAX_MB=0 means no bound (as it always did)."""
    monkeypatch.setenv("ENCODER_THREADS", "x")
    monkeypatch.setenv("REPLICAS", "x")
    monkeypatch.setenv("FAQ_QUERY_LOG_MAX_MB", "0")
    for name in ("FAQ_ENCODER_THREADS", "FAQ_TORCH_THREADS", "FAQ_REPLICAS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert (settings.encoder_threads, settings.replicas, settings.query_log_max_mb) == (None, 3, None)
    monkeypatch.setenv("FAQ_REPLICAS", "5")
    assert Settings.from_env().replicas == 5
