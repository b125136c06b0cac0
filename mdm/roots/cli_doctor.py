"""`hikeshi doctor`: the production checklist, checked, in Japanese and English."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from mdm.ground.db import make_engine, make_session_factory

_MARK = {"ok": "OK", "warn": "WARN", "fail": "FAIL", "unknown": "?", "not configured": "-"}
_STATE_JA = {"ok": "正常", "warn": "注意", "fail": "失敗", "unknown": "不明", "not configured": "未設定"}


@click.command("doctor")
@click.option("--timeout", default=10.0, show_default=True, type=float, help="Seconds for the HTTPS check.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per finding.")
@click.pass_obj
def doctor(obj: Any, timeout: float, as_json: bool) -> None:
    """Check push certificate, HTTPS, public URL, clock, database, backups, administrator and the
    ABM token; exit 1 when any check fails."""
    from mdm.services.doctor import examine, failed

    settings = obj.settings
    engine = make_engine(settings.database_url)
    try:
        findings = examine(settings, engine, make_session_factory(engine), timeout=timeout)
    finally:
        engine.dispose()
    for f in findings:
        if as_json:
            click.echo(json.dumps(f.__dict__, ensure_ascii=False))
            continue
        click.echo(f"[{_MARK[f.state]:>4}] {f.label_ja} / {f.label_en}")
        click.echo(f"       {_STATE_JA[f.state]}: {f.ja}")
        click.echo(f"       {f.state}: {f.en}")
    if failed(findings):
        if not as_json:
            click.echo("準備ができていません / not ready: fix the FAIL items above", err=True)
        sys.exit(1)
    if not as_json:
        click.echo("端末を登録できる状態です / ready to enroll")


COMMANDS = [doctor]
