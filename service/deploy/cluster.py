"""A local cluster: Redis, N replicas of the service, HAProxy in front (``make cluster``, ``cli/cluster.py`` its
command line; docs/scaling.md).

Each replica is the ordinary gunicorn service (``service/http/gunicorn_conf.py``) on its own port, with its own
workers, named in ``X-Served-By``; all of them serve the published index directory (``faq-search publish``) and
watch it, and count the rate limit in the one Redis. HAProxy health-checks ``/ready``, sends a failed search again to
another replica, and drains a replica before it stops. Every process is started in its own session, its pid kept
in the run directory; ``stop`` ends them all (and anything they started).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..indexing.store import CURRENT, publish_index
from ..processes import alive
from ..settings import GUNICORN_ARGS, REPO_ROOT, Settings, child_environment

#: The configuration templates of Redis and HAProxy and HAProxy's error pages (package data: an installed package
#: starts a cluster as a checkout does).
TEMPLATES = Path(__file__).with_name("templates")
#: The processes this one started, by pid: kept to be reaped when they end (``stop`` in the same process).
_CHILDREN: dict[int, subprocess.Popen] = {}


class ClusterError(RuntimeError):
    """A cluster process that could not start (its log's last lines in the message), or a missing program."""


def _default(name: str):
    """The default of a setting (``Settings``: one default each, whoever starts the cluster)."""
    return Settings.model_fields[name].default


@dataclass
class ClusterSpec:
    """Where and how the cluster runs; every field has an environment variable (``Settings``, the Makefile)."""

    replicas: int = _default("replicas")
    run_dir: Path = _default("cluster_dir")
    front_host: str = "127.0.0.1"
    front_port: int = _default("front_port")
    first_replica_port: int = _default("first_replica_port")
    workers_per_replica: int = _default("workers_per_replica")
    #: The index directory every replica serves (``faq-search publish`` writes it); default: run_dir/published.
    publish_dir: Path | None = None
    model: str | None = None
    rate_limit: str | None = None
    replica_maxconn: int = 8
    watch_seconds: float = 1.0
    extra_env: dict = field(default_factory=dict)
    #: The FAQs the replicas serve, by name (docs/faqs.md): each published in ``publish_dir/<name>``; empty: one
    #: FAQ, published in ``publish_dir`` itself.
    faqs: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.run_dir = Path(self.run_dir).resolve()
        self.publish_dir = Path(self.publish_dir or self.run_dir / "published").resolve()
        if self.replicas < 1:
            raise ValueError("a cluster needs at least one replica")

    def names(self) -> list[str]:
        """The replicas' names: r1, r2, …"""
        return [f"r{i + 1}" for i in range(self.replicas)]

    def port(self, name: str) -> int:
        """The port replica ``name`` listens on."""
        return self.first_replica_port + int(name[1:]) - 1

    def published(self, faq: str | None = None) -> Path:
        """The index directory the replicas serve for ``faq`` (None: the cluster of one FAQ)."""
        return self.publish_dir / faq if faq else self.publish_dir

    @property
    def faqs_config(self) -> Path:
        """The replicas' ``FAQ_CONFIG`` when the cluster serves several FAQs (written by ``start``)."""
        return self.run_dir / "faqs.toml"

    @property
    def redis_socket(self) -> Path:
        """Redis listens on this Unix socket only (no TCP port): only this user reaches it (mode 700)."""
        return self.run_dir / "redis.sock"

    @property
    def redis_url(self) -> str:
        return f"redis+unix://{self.redis_socket}?db=0"

    @property
    def url(self) -> str:
        return f"http://{self.front_host}:{self.front_port}"


def _render(template: str, **fields) -> str:
    return string.Template((TEMPLATES / template).read_text(encoding="utf-8")).substitute(**fields)


SPEC_FILE = "spec.json"


def load_spec(run_dir: str | os.PathLike) -> ClusterSpec | None:
    """The spec a cluster was started with (``run_dir/spec.json``, written by ``start``), or None."""
    try:
        fields = json.loads((Path(run_dir) / SPEC_FILE).read_text())
        return ClusterSpec(**{k: v for k, v in fields.items() if k in ClusterSpec.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None


def render_haproxy(spec: ClusterSpec) -> str:
    """``templates/haproxy.cfg`` filled in for ``spec``: one ``server`` line per replica."""
    servers = "\n".join(f"    server {n} 127.0.0.1:{spec.port(n)}" for n in spec.names())
    return _render(
        "haproxy.cfg", run_dir=spec.run_dir, front_host=spec.front_host, front_port=spec.front_port,
        templates=TEMPLATES, replica_maxconn=spec.replica_maxconn, servers=servers,
    )  # fmt: skip


def render_faqs_config(spec: ClusterSpec) -> str:
    """The replicas' configuration of FAQs: each at its published directory (JSON strings are TOML basic strings,
    so any path is quoted right)."""
    return "".join(
        f"[[faq]]\nname = {json.dumps(faq)}\nindex = {json.dumps(str(spec.published(faq)))}\n\n" for faq in spec.faqs
    )


def render_redis(spec: ClusterSpec) -> str:
    """``templates/redis.conf`` filled in for ``spec``."""
    return _render("redis.conf", redis_socket=spec.redis_socket, run_dir=spec.run_dir)


def _program(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not found:
        raise ClusterError(f"{name} is not installed: `make cluster` installs it (apt-get install {name})")
    return found


def _pidfile(spec: ClusterSpec, name: str) -> Path:
    return spec.run_dir / f"{name}.pid"


def _spawn(spec: ClusterSpec, name: str, argv: list[str], env: dict | None = None) -> int:
    """Start ``argv`` in a session of its own (so that stop can end it and its children), logging to name.log."""
    log = open(spec.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
    process = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    log.close()
    _CHILDREN[process.pid] = process
    # The pid and the process's start time: a pid file left by a crash never names another process later.
    _pidfile(spec, name).write_text(f"{process.pid} {_started(process.pid)}")
    return process.pid


def _tail(spec: ClusterSpec, name: str, lines: int = 15) -> str:
    try:
        return "\n".join((spec.run_dir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _started(pid: int) -> str | None:
    """When process ``pid`` started (``/proc/<pid>/stat``'s field 22, in clock ticks since boot), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:  # ended, and now reaped
        del _CHILDREN[pid]
        return False
    return alive(pid)


def _pid(spec: ClusterSpec, name: str) -> int | None:
    """The pid of this cluster's process ``name`` while it runs; None when it does not (or when its pid file names
    a pid that now belongs to another process: another start time)."""
    try:
        pid_text, started = _pidfile(spec, name).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and _started(pid) == started else None


def _wait(check, seconds: float, what: str, spec: ClusterSpec, name: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        if _pid(spec, name) is None:
            raise ClusterError(f"{what} exited while starting:\n{_tail(spec, name)}")
        time.sleep(0.1)
    raise ClusterError(f"{what} not ready after {seconds:.0f} s:\n{_tail(spec, name)}")


def _port_open(port: int | Path) -> bool:
    """Whether something accepts connections on the loopback ``port``, or on the Unix socket at that path."""
    unix = isinstance(port, Path)
    with socket.socket(socket.AF_UNIX if unix else socket.AF_INET) as s:
        s.settimeout(0.2)
        return s.connect_ex(str(port) if unix else ("127.0.0.1", port)) == 0


def _refuse_taken(port: int, what: str) -> None:
    """Refuse to start ``what`` on a port something else already listens on (it would fail to bind, and the
    cluster would talk to that other process instead)."""
    if _port_open(port):
        raise ClusterError(f"port {port} of {what} is already in use by another process: stop it or choose another")


def served_by(port: int) -> str | None:
    """The ``X-Served-By`` of the service on ``port`` when it is ready (``/ready`` 200), else None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
            return response.headers.get("X-Served-By")
    except OSError:
        return None


def ready(port: int) -> dict | None:
    """``GET /ready`` of the service on ``port``: its JSON when it answers 200, else None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def start_redis(spec: ClusterSpec) -> int:
    """Start Redis (or leave the running one); returns its pid."""
    pid = _pid(spec, "redis")
    if pid:
        return pid
    (spec.run_dir / "redis.conf").write_text(render_redis(spec))
    spec.redis_socket.unlink(missing_ok=True)
    pid = _spawn(spec, "redis", [_program("redis-server"), str(spec.run_dir / "redis.conf")])
    _wait(lambda: _port_open(spec.redis_socket), 10, "redis-server", spec, "redis")
    return pid


def replica_env(spec: ClusterSpec, name: str) -> dict:
    """The environment of replica ``name``: the service's own variables, set for the cluster."""
    return child_environment(
        # Each replica's gunicorn makes its own metrics directory; then what the cluster's spec adds.
        # A cluster of several FAQs names them in its own faqs.toml: FAQ_FAQS of the environment would name them twice.
        {
            "PROMETHEUS_MULTIPROC_DIR": None,
            "FAQ_FAQS": None,
            **({} if spec.faqs else {"FAQ_CONFIG": None}),
            **spec.extra_env,
        },  # fmt: skip
        host="127.0.0.1",
        port=spec.port(name),
        replica_name=name,
        index=spec.published(spec.faqs[0] if spec.faqs else None),
        config=spec.faqs_config if spec.faqs else None,
        watch_seconds=spec.watch_seconds,
        workers=spec.workers_per_replica,
        # The host's cores shared by every worker of every replica (gunicorn_conf divides by its own workers only).
        encoder_threads=max(1, (os.cpu_count() or 1) // (spec.replicas * spec.workers_per_replica)),
        rate_limit_storage=spec.redis_url,
        # Behind HAProxy, the client is the address HAProxy puts in X-Forwarded-For (it overwrites what a client
        # sends), not HAProxy's own 127.0.0.1: the rate limit counts each client, not the proxy.
        proxy_hops=1,
        model=spec.model,
        rate_limit=spec.rate_limit,
    )


def start_replica(spec: ClusterSpec, name: str, wait: bool = True) -> int:
    """Start replica ``name`` (gunicorn with the service's settings); with ``wait``, until ``/ready`` answers."""
    pid = _pid(spec, name)
    if pid is None:
        _refuse_taken(spec.port(name), f"replica {name}")
        argv = [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS]
        pid = _spawn(spec, name, argv, env=replica_env(spec, name))
    if wait:
        _wait(lambda: served_by(spec.port(name)) == name, 120, f"replica {name}", spec, name)
        if _pid(spec, "haproxy"):
            haproxy_command(spec, f"set server replicas/{name} state ready")  # back from stop_replica's maint
    return pid


def start_haproxy(spec: ClusterSpec) -> int:
    """Start HAProxy on ``spec.front_port`` (after checking its configuration); returns its pid."""
    pid = _pid(spec, "haproxy")
    if pid:
        return pid
    _refuse_taken(spec.front_port, "HAProxy")
    config = spec.run_dir / "haproxy.cfg"
    config.write_text(render_haproxy(spec))
    haproxy = _program("haproxy")
    checked = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True)
    if checked.returncode != 0:
        raise ClusterError(f"{config} is not a valid HAProxy configuration:\n{checked.stdout}{checked.stderr}")
    pid = _spawn(spec, "haproxy", [haproxy, "-db", "-f", str(config)])
    _wait(lambda: _port_open(spec.front_port), 10, "haproxy", spec, "haproxy")
    return pid


def start(
    spec: ClusterSpec, index_dir: str | os.PathLike | None = None, faq_indexes: dict[str, Path] | None = None
) -> dict:
    """Start Redis, the replicas and HAProxy; publish ``index_dir`` first when nothing is published yet (for a
    cluster of several FAQs, each FAQ's build of ``faq_indexes`` that is not published yet).

    Returns:
        ``status(spec)`` once every replica is ready and HAProxy listens.
    Raises:
        ClusterError: a program missing, or a process that did not start (with its log's last lines).
    """
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    before = load_spec(spec.run_dir)
    if before is not None and any(_pid(before, n) for n in ["redis", "haproxy", *before.names()]):
        changed = sorted(k for k, v in asdict(spec).items() if asdict(before).get(k) != v)
        if changed:  # a running cluster is not changed under its replicas: said, not silently kept
            raise ClusterError(
                f"a cluster already runs in {spec.run_dir} with other settings ({', '.join(changed)}): "
                "stop it first (`make cluster-stop` or `faq-search cluster down`)"
            )
    (spec.run_dir / SPEC_FILE).write_text(json.dumps(asdict(spec), default=str, indent=2))
    for faq in spec.faqs or [None]:
        target = spec.published(faq)
        if not (target / CURRENT).exists():
            source = (faq_indexes or {}).get(faq) if faq else index_dir
            if source is None:
                raise ClusterError(f"nothing is published in {target}: publish a build first")
            publish_index(source, target)
    if spec.faqs:  # the replicas' FAQs, each at its published directory
        spec.faqs_config.write_text(render_faqs_config(spec), encoding="utf-8")
    running = {name for name in ["redis", "haproxy", *spec.names()] if _pid(spec, name)}
    try:
        start_redis(spec)
        for name in spec.names():
            start_replica(spec, name, wait=False)
        for name in spec.names():
            start_replica(spec, name, wait=True)
        start_haproxy(spec)
    except BaseException:
        for name in ["haproxy", *spec.names(), "redis"]:
            if name not in running:  # what this call started, not what ran before it
                _end(spec, name)
        raise
    return status(spec)


def haproxy_command(spec: ClusterSpec, command: str) -> str:
    """One command to HAProxy's runtime API (its stats socket); returns the answer."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(spec.run_dir / "haproxy.sock"))
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def server_states(spec: ClusterSpec) -> dict[str, str]:
    """What HAProxy thinks of each replica: ``UP``, ``DOWN``, ``DRAIN``, ``MAINT``… (with ``show stat``)."""
    lines = haproxy_command(spec, "show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    states = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "replicas" and row.get("svname") not in ("FRONTEND", "BACKEND"):
            states[row["svname"]] = row["status"]
    return states


def _end(spec: ClusterSpec, name: str, timeout: float = 30) -> bool:
    """SIGTERM the process ``name`` and its session, SIGKILL what is left after ``timeout``; True if it ran."""
    pid = _pid(spec, name)
    if pid is None:
        _pidfile(spec, name).unlink(missing_ok=True)
        return False
    # HAProxy's graceful stop is SIGUSR1 (it stops listening and leaves once its requests are answered); SIGTERM
    # is gunicorn's and Redis's.
    first = signal.SIGUSR1 if name == "haproxy" else signal.SIGTERM
    try:
        os.killpg(pid, first)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)  # the workers too, if their master left them behind
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise ClusterError(f"cannot stop {name} (pid {pid}): {exc}") from None
    _pidfile(spec, name).unlink(missing_ok=True)
    return True


def stop_replica(spec: ClusterSpec, name: str, drain_seconds: float = 10) -> None:
    """Stop replica ``name`` without failing a request: drain it in HAProxy (no new requests; those in flight
    finish), wait until it has none left (``drain_seconds`` at most), then stop it gracefully."""
    if _pid(spec, "haproxy"):
        haproxy_command(spec, f"set server replicas/{name} state drain")
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline:
            rows = [r for r in haproxy_command(spec, "show stat").splitlines() if f"replicas,{name}," in r]
            if not rows or rows[0].split(",")[4] == "0":  # scur: requests in flight
                break
            time.sleep(0.1)
    _end(spec, name)
    if _pid(spec, "haproxy"):
        # Kept out of rotation until start_replica sees it ready again (not merely until 2 checks fail).
        haproxy_command(spec, f"set server replicas/{name} state maint")


def stop(spec: ClusterSpec) -> list[str]:
    """Stop HAProxy, every replica and Redis; returns the names of those that were running."""
    replicas = sorted(p.stem for p in spec.run_dir.glob("r*.pid"))  # also those of a larger cluster started before
    stopped = [name for name in ["haproxy", *replicas, "redis"] if _end(spec, name)]
    (spec.run_dir / "haproxy.sock").unlink(missing_ok=True)
    spec.redis_socket.unlink(missing_ok=True)
    return stopped


def status(spec: ClusterSpec) -> dict:
    """Each process's pid (None: not running), each replica's ``/ready`` and HAProxy's view of it."""
    states = {}
    if _pid(spec, "haproxy"):
        try:
            states = server_states(spec)
        except OSError:
            states = {}
    return {
        "url": spec.url,
        "published": str(spec.publish_dir),
        "redis": {"pid": _pid(spec, "redis"), "socket": str(spec.redis_socket)},
        "haproxy": {"pid": _pid(spec, "haproxy")},
        "replicas": {
            name: {
                "pid": _pid(spec, name),
                "port": spec.port(name),
                "ready": ready(spec.port(name)),
                "haproxy": states.get(name),
            }
            for name in spec.names()
        },
    }
