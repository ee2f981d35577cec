"""``faq-search``: one command for the service's tools (``faq-search COMMAND --help`` for each).

faq-search serve             the production server (gunicorn); --dev: Flask's development server
faq-search build             build the index of a corpus (scripts/build_index.py)
faq-search evaluate          measure retrieval quality (scripts/evaluate.py)
faq-search prepare-model     convert the offline model and export it to ONNX (scripts/prepare_model.py)
faq-search adapt             fine-tune the model on labelled user questions (scripts/adapt_model.py)
faq-search fit-answerability fit the answer check on covid_quebec_fr (scripts/fit_answerability.py)
faq-search gaps              the FAQ's missing questions from the query log (scripts/gaps.py)
faq-search publish           publish a build to the index directory a cluster's replicas serve from
faq-search cluster           start, stop or list a local cluster: Redis, N replicas, HAProxy (make cluster)
faq-search mcp               the MCP server for LLM assistants (python -m service.mcp)
"""

from __future__ import annotations

import importlib
import sys

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


def main(argv: list[str] | None = None) -> int:
    """Run the named command with the remaining arguments; print the list for no or an unknown command."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    sys.argv[0] = f"faq-search {argv[0]}"  # each command's --help and errors name it so
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
