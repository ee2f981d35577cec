"""``faq-search``: one command for the service's tools (``faq-search COMMAND --help`` for each).

faq-search serve             the production server (gunicorn); --dev: Flask's development server
faq-search build             build the index of a corpus
faq-search evaluate          measure retrieval quality
faq-search prepare-model     convert the offline model and export it to ONNX
faq-search adapt             fine-tune the model on labelled user questions
faq-search fit-answerability fit the answer check on covid_quebec_fr
faq-search gaps              the FAQ's missing questions from the query log
faq-search publish           publish a build to the index directory a cluster's replicas serve from
faq-search cluster           start, stop or list a local cluster: Redis, N replicas, HAProxy (make cluster)
faq-search mcp               the MCP server for LLM assistants (also python -m service.mcp)
faq-search --version         the version of the service
"""

from __future__ import annotations

import importlib
import sys

from ..settings import Settings, SettingsError, unknown_variable_warnings

#: Command name -> module whose ``main(argv)`` runs it; imported only when chosen (each pulls its own libraries).
COMMANDS = {
    "serve": "service.cli.serve",
    "build": "service.cli.build",
    "evaluate": "service.cli.evaluate",
    "prepare-model": "service.cli.prepare_model",
    "adapt": "service.cli.adapt",
    "fit-answerability": "service.cli.fit_answerability",
    "gaps": "service.cli.gaps",
    "publish": "service.cli.publish",
    "cluster": "service.cli.cluster",
    "mcp": "service.integrations.mcp",
}


_warned: list[bool] = []  # the unknown variables are said once per process

#: The optional tool groups `make run` does not install: the requirements file of each, and the modules it brings.
EXTRAS = {
    "finetune": ("requirements-finetune.txt", ("datasets", "accelerate")),
    "eval": ("requirements-eval.txt", ("ir_measures",)),
}


def require_extra(group: str, what: str) -> None:
    """End the command (exit 2) saying what to install when ``group``'s packages are missing (``EXTRAS``)."""
    import importlib.util

    path, modules = EXTRAS[group]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"error: {what} needs {', '.join(missing)}, which `make run` does not install: "
            f".venv/bin/pip install -r {path} (or `make install-dev`, which installs every tool)",
            file=sys.stderr,
        )
        raise SystemExit(2)


def settings_or_exit(**overrides) -> Settings:
    """The settings of the environment (and ``overrides``); a variable that is not valid ends the command with its
    reason (exit 2), before anything starts. A ``FAQ_*`` variable that is no setting is warned about (once)."""
    try:
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if not _warned:
        _warned.append(True)
        for line in unknown_variable_warnings():
            print(line, file=sys.stderr)
    return settings


def main(argv: list[str] | None = None) -> int:
    """Run the named command with the remaining arguments; print the list for no or an unknown command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-V", "--version"):
        from .. import __version__

        print(f"faq-search {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(
            __doc__.strip().replace("``", ""), file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        )
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    sys.argv[0] = f"faq-search {argv[0]}"  # each command's --help and errors name it so
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
