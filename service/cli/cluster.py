"""``faq-search cluster``: the command line of ``deploy/cluster.py`` (same concept, the CLI layer). A local cluster:
Redis, N replicas, HAProxy on 127.0.0.1:8080 (docs/scaling.md).

    faq-search cluster up --replicas 3          # publishes index/ first when nothing is published yet
    faq-search cluster status
    faq-search cluster stop-replica r2          # drained in HAProxy, then stopped
    faq-search cluster start-replica r2
    faq-search cluster down                     # everything stops; nothing is left running

Defaults come from the environment (REPLICAS, FAQ_CLUSTER_DIR, FAQ_FRONT_PORT, FAQ_PUBLISH_DIR, FAQ_RATE_LIMIT…);
every action but `up` acts on the cluster started in --dir, with the settings it was started with.
"""

from __future__ import annotations

import argparse
import json
import sys

from service.cli import settings_or_exit
from service.core.faq_config import FaqConfigError, faq_specs
from service.deploy.cluster import (
    ClusterError,
    ClusterSpec,
    load_spec,
    start,
    start_replica,
    status,
    stop,
    stop_replica,
)
from service.errors import ServiceError


def spec_from(args) -> ClusterSpec:
    """The cluster these options describe; for every action but ``up``, the one started in ``--dir`` (its
    ``spec.json``: the same replicas, ports, model and rate limit), when there is one."""
    if args.action != "up":
        started = load_spec(args.dir)
        if started is not None:
            return started
    return ClusterSpec(
        replicas=args.replicas, run_dir=args.dir, front_port=args.port, first_replica_port=args.first_replica_port,
        workers_per_replica=args.workers, publish_dir=args.published, model=args.model, rate_limit=args.rate_limit,
        faqs=[spec.name for spec in args.faq_specs],
    )  # fmt: skip


def _int(value: str) -> int:
    return int(value)


def main(argv: list[str] | None = None) -> int:
    """Parse the options and act on the cluster."""
    settings = settings_or_exit()
    parser = argparse.ArgumentParser(
        description=__doc__.replace("``", "`"), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["up", "down", "status", "stop-replica", "start-replica"])
    parser.add_argument("replica", nargs="?", help="stop-replica / start-replica: the replica's name (r1, r2…)")
    parser.add_argument("--replicas", type=_int, default=settings.replicas, help="replicas (FAQ_REPLICAS; 3)")
    parser.add_argument("--dir", default=str(settings.cluster_dir), help="run directory: pids, logs, configs")
    parser.add_argument("--port", type=_int, default=settings.front_port, help="HAProxy's port (8080)")
    parser.add_argument("--first-replica-port", type=_int, default=settings.first_replica_port,
                        help="replica r1's port; r2 the next… (8101)")  # fmt: skip
    parser.add_argument("--workers", type=_int, default=settings.workers_per_replica,
                        help="gunicorn workers per replica (1)")  # fmt: skip
    parser.add_argument("--published", default=settings.publish_dir,
                        help="the index directory the replicas serve (default: DIR/published)")  # fmt: skip
    parser.add_argument("--index", default=str(settings.index), help="published at `up` if nothing is yet")
    parser.add_argument("--model", default=settings.model, help="the model directory (default: the service's)")
    parser.add_argument("--rate-limit", default=settings.rate_limit, help="per-client limit, counted in Redis")
    parser.add_argument(
        "--faq", action="append", default=[], metavar="NAME=INDEX_DIR",
        help="serve several FAQs (repeat; or FAQ_CONFIG): each build published at `up` to <published>/NAME",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:  # the FAQs of FAQ_CONFIG and of --faq, checked whole (docs/faqs.md)
        several = settings.model_copy(update={"faqs": ",".join(args.faq) or settings.faqs})
        args.faq_specs = faq_specs(several) if several.config or several.faqs else []
    except FaqConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.action in ("stop-replica", "start-replica") and not args.replica:
        parser.error(f"{args.action} needs the replica's name (r1, r2…)")
    try:
        spec = spec_from(args)
        if args.action in ("stop-replica", "start-replica") and args.replica not in spec.names():
            parser.error(f"no replica {args.replica!r}: this cluster has {', '.join(spec.names())}")
        if args.action == "up":
            result = start(spec, args.index, {faq.name: faq.index for faq in args.faq_specs})
        elif args.action == "down":
            result = {"stopped": stop(spec)}
        elif args.action == "stop-replica":
            stop_replica(spec, args.replica)
            result = status(spec)
        elif args.action == "start-replica":
            start_replica(spec, args.replica)
            result = status(spec)
        else:
            result = status(spec)
    except (ClusterError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
