"""Measuring the production server: start gunicorn with the service's settings, load it with wrk.

Used by ``scripts/bench.py`` and ``scripts/faults.py``; loopback only.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..settings import GUNICORN_ARGS, REPO_ROOT, child_environment


def wrk(url: str, concurrency: int, seconds: int, script: Path, timeout: int = 2) -> dict:
    """Run wrk against ``url`` and parse its summary (requests/s, latency percentiles, errors).

    Args:
        timeout: seconds after which wrk gives up on a request (counted as a socket error).
    """
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: `make bench` installs it (apt-get install wrk)")
    threads = min(2, concurrency)
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{seconds}s",
            f"--timeout={timeout}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    out = done.stdout

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    latency = {f"p{p}_ms": round(ms(m), 2) for p, m in re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M)}
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "concurrency": concurrency,
        "qps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": requests,
        **latency,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def wrk_post_script(path: Path, body: dict) -> Path:
    """A wrk Lua script that POSTs ``body`` as JSON to the URL wrk is given."""
    # A Lua long string: the body as it is, quotes and apostrophes included ("je n'ai pas reçu…").
    path.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{json.dumps(body, ensure_ascii=False)}]==]\n",
        encoding="utf-8",
    )
    return path


def start_gunicorn(index_dir: Path, model: str, port: int = 8799, extra_env: dict | None = None):
    """Start gunicorn with the service's settings on 127.0.0.1 (cache off) and wait until it answers.

    Returns:
        ``(process, base_url)``; the caller terminates the process.
    """
    env = child_environment(extra_env, index=index_dir, model=model, port=port, cache_size=0, log_level="warning")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return server, url
        except OSError as exc:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit("gunicorn did not start") from exc
            time.sleep(0.2)
