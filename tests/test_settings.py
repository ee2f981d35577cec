"""The settings: one typed object reads every ``FAQ_*`` variable (``service/settings.py``), docs/operations.md's
table documents exactly those, and nothing else in the package reads the environment."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

from service.settings import Settings, SettingsError

#: Variables the table documents that the service does not read (the tests' browser).
NOT_SETTINGS = {"FAQ_CHROMIUM"}


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
