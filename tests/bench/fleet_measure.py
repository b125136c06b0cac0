"""One measurement of the issue-23 benchmark, in a process of its own (so its peak RSS is the
job's, and so the same script can run against another checkout's code by PYTHONPATH):

    .venv/bin/python tests/bench/fleet_measure.py URL jobs|readiness|requests|pages|stop

Prints one JSON object. Driven by tests/bench/bench_fleet_scale.py.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from mdm.ground.config import Settings
from mdm.ground.db import make_engine, make_session_factory


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    return {"p50_ms": round(at(0.5), 1), "p95_ms": round(at(0.95), 1)}


def _rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a
    process started by the benchmark (a pytest process holding the seeded fleet) reported its
    parent's 330-360 MB, whatever the job used."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _context(url: str, stopping: threading.Event | None = None) -> Any:
    from mdm.roots.scheduler.jobs import JobContext
    from mdm.roots.wiring import wire

    engine = make_engine(url)
    factory = make_session_factory(engine)
    wire(factory, None, seal_in_background=False)
    settings = Settings(instance_path=Path(tempfile.mkdtemp()), database_url=url, secret_key="bench")
    kwargs = {"stopping": stopping} if stopping is not None else {}
    return engine, JobContext(factory, settings, "bench:1", **kwargs)


def jobs(url: str) -> dict[str, Any]:
    from mdm.roots.scheduler.jobs import run_job

    engine, ctx = _context(url)
    statements = [0]
    event.listen(engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))
    out: dict[str, Any] = {}
    for name in ("offline_check", "certificate_expiry"):
        for attempt in ("first", "second"):
            statements[0] = 0
            t0 = time.perf_counter()
            run = run_job(ctx, name)
            out[f"{name} {attempt} run"] = {
                "seconds": round(time.perf_counter() - t0, 2),
                "outcome": run.outcome,
                "details": {k: v for k, v in (run.details or {}).items() if k != "traceback"},
                "statements": statements[0],
                "peak_rss_mb": round(_rss_mb(), 1),
            }
    return out


def readiness(url: str) -> dict[str, Any]:
    from mdm.roots.scheduler.jobs import run_job

    _, ctx = _context(url)
    t0 = time.perf_counter()
    run = run_job(ctx, "readiness_recompute")
    out: dict[str, Any] = {
        "readiness_recompute": {
            "seconds": round(time.perf_counter() - t0, 2),
            "outcome": run.outcome,
            "error": str((run.details or {}).get("error", ""))[:200],
            "peak_rss_mb": round(_rss_mb(), 1),
        }
    }
    try:
        client, headers = _client(url)
    except Exception as exc:  # an older checkout refuses a database migrated past it
        out["GET /api/v1/readiness"] = {"failed": str(exc)[:200]}
        return out
    out["GET /api/v1/readiness"] = _timed(client, "/api/v1/readiness", headers, calls=20)
    body = client.get("/api/v1/readiness", headers=headers)
    out["GET /api/v1/readiness"]["bytes"] = len(body.get_data())
    first = body.get_json()
    if isinstance(first, dict) and "total" in first:  # paged (issue 23): every page, one after another
        pages = -(-first["total"] // first["per_page"])
        t0 = time.perf_counter()
        size = 0
        for n in range(1, pages + 1):
            size += len(client.get(f"/api/v1/readiness?page={n}", headers=headers).get_data())
        out["GET /api/v1/readiness, every page"] = {
            "units": first["total"],
            "pages": pages,
            "seconds": round(time.perf_counter() - t0, 2),
            "bytes": size,
        }
    out["GET /console/continuity"] = _timed_console(url, "/console/continuity")
    return out


def _timed_console(url: str, path: str, calls: int = 20) -> dict[str, Any]:
    """A console page as an operator signs in to it (password through the login form)."""
    from tests.web.helpers import login, make_user

    client, _ = _client(url)
    app = client.application
    with app.extensions["hikeshi"].session_factory() as s:
        account = make_user(
            s, app.extensions["hikeshi"].settings, f"bench{int(time.time() * 1000)}", "operator", totp=False
        )
    login(client, account)
    return _timed(client, path, {}, calls=calls)


def _client(url: str) -> tuple[Any, dict[str, str]]:
    from mdm import create_app
    from tests.web.helpers import bearer, make_token

    settings = Settings(
        instance_path=Path(tempfile.mkdtemp()),
        database_url=url,
        secret_key="bench",
        public_url="https://mdm.bench.invalid",
    )
    app = create_app(settings)
    gc.freeze()  # as a `hikeshi serve` worker does once its app is built (mdm.roots.server)
    with app.extensions["hikeshi"].session_factory() as s:
        headers = bearer(make_token(s, "admin", name=f"bench {time.time()}"))
    return app.test_client(), headers


def _timed(client: Any, path: str, headers: dict[str, str], calls: int = 40) -> dict[str, Any]:
    first = client.get(path, headers=headers)
    spent = []
    statuses = {first.status_code}
    for _ in range(calls):
        t0 = time.perf_counter()
        response = client.get(path, headers=headers)
        spent.append(time.perf_counter() - t0)
        statuses.add(response.status_code)
    return {**_percentiles(spent), "status": sorted(statuses)}


def requests(url: str) -> dict[str, Any]:
    from commands.incidents.views import find_devices
    from mdm.services.orgunits import list_units

    client, headers = _client(url)
    n = 12345
    asset, serial, user = f"FD-{n:06d}", f"DMQ{n:09d}", f"隊員{n:06d}"
    out: dict[str, Any] = {}
    for name, path in {
        "API device list, default": "/api/v1/devices?per_page=50",
        "API device list, newest seen": "/api/v1/devices?per_page=50&sort=-last_seen",
        "API search asset tag": f"/api/v1/devices?per_page=50&q={asset}",
        "API search serial": f"/api/v1/devices?per_page=50&q={serial}",
        "API search user": f"/api/v1/devices?per_page=50&q={user}",
        "API search substring 'D-0123'": "/api/v1/devices?per_page=50&q=D-0123",
        "API incidents": "/api/v1/incidents",
        "API alerts": "/api/v1/alerts",
    }.items():
        out[name] = _timed(client, path, headers)
    for name, path in {
        "console device list (with the unit drop-down)": "/console/devices",
        "console hotline page, asset tag": f"/console/hotline?q={asset}",
    }.items():
        out[name] = _timed_console(url, path)
    factory = client.application.extensions["hikeshi"].session_factory
    for name, text in {
        "hotline search asset tag": asset,
        "hotline search serial": serial,
        "hotline search user": user,
        "hotline search substring": "12345",
    }.items():
        spent = []
        with factory() as s:
            hits = find_devices(s, text, unit_ids=None)
            for _ in range(40):
                s.expunge_all()
                t0 = time.perf_counter()
                find_devices(s, text, unit_ids=None)
                spent.append(time.perf_counter() - t0)
        out[name + " (service behind the hotline page)"] = {**_percentiles(spent), "hits": len(hits)}
    spent = []
    with factory() as s:
        for _ in range(40):
            t0 = time.perf_counter()
            list_units(s)
            spent.append(time.perf_counter() - t0)
    out["every unit (list_units, the drop-down before issue 23)"] = _percentiles(spent)
    try:
        from web.rbac import Principal
        from web.unit_choices import unit_choices
    except ImportError:  # a checkout before the bounded drop-down
        return out
    admin = Principal("user", 0, "bench", "admin")
    for label, typed in {"": "", "typed '救急'": "救急", "typed a unit code": "U00123"}.items():
        spent = []
        with factory() as s:
            for _ in range(40):
                s.expunge_all()
                t0 = time.perf_counter()
                choices = unit_choices(s, admin, typed)
                spent.append(time.perf_counter() - t0)
        out[f"unit drop-down (unit_choices) {label}".strip()] = {
            **_percentiles(spent),
            "options": len(choices.units),
        }
    return out


def stop(url: str) -> dict[str, Any]:
    """A full-rule fleet check (slow: the profile sources per device) told to stop by SIGTERM."""
    # The handler first: a SIGTERM while the imports below run must not kill the process outright.
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    from mdm.roots.scheduler.jobs import fleet_check
    from mdm.services.compliance.rules import RULES

    _, ctx = _context(url, stopping)
    print("started", flush=True)  # the driver sends SIGTERM only once the check is under way
    t0 = time.perf_counter()
    result = fleet_check(ctx, list(RULES))
    return {"ran_seconds": round(time.perf_counter() - t0, 2), "result": result}


def pages(url: str) -> dict[str, Any]:
    """Console pages and API lists at fleet scale that the other measurements leave out: the
    continuity board as an operator opens it, the device list's search for something in every
    tablet (a count of the whole fleet before the bounded count), the audit list."""
    out: dict[str, Any] = {}
    for path in ("/console/continuity", "/console/devices", "/console/devices?q=1"):
        out[f"console {path}"] = _timed_console(url, path)
    client, headers = _client(url)
    for path in (
        "/api/v1/devices?per_page=50&q=1",
        "/api/v1/devices?per_page=50&q=DMQ",
        "/api/v1/audit/events",
    ):
        out[f"API {path}"] = _timed(client, path, headers, calls=20)
    return out


if __name__ == "__main__":
    url, what = sys.argv[1], sys.argv[2]
    print(json.dumps({"pid": os.getpid(), **globals()[what](url)}, ensure_ascii=False))
