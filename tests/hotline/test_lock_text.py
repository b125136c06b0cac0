"""The lock-screen text is checked once, by the lock command's schema (commands.lock_screen), and
a refusal names the field the operator typed in; the phone-number pattern exists in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

import commands.incidents as hotline
from commands.lock_screen import PHONE_PATTERN
from mdm.ground.audit import Actor
from mdm.ground.models import Command
from tests.support.factories import make_device

OPERATOR = Actor("operator-tanaka", "operator", "192.0.2.10")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("supervised", [True, False])
def test_a_bad_lock_text_names_the_form_field_and_queues_nothing(session, frozen_clock, supervised):
    device = make_device(session, supervised=supervised)
    incident = hotline.open_incident(session, device, {"caller_name": "山田"}, actor=OPERATOR)
    with pytest.raises(hotline.IncidentInputError) as err:
        hotline.lock_now(
            session, incident, actor=OPERATOR, message={"message": "x" * 501, "phone_number": "call me"}
        )
    assert set(err.value.fields) == {"message", "phone_number"}
    with pytest.raises(hotline.IncidentInputError) as unknown:
        hotline.lock_now(session, incident, actor=OPERATOR, message={"finder_note": "x"})
    assert set(unknown.value.fields) == {"finder_note"}
    assert session.query(Command).count() == 0


def test_the_phone_number_pattern_is_written_once():
    copies = [
        path.relative_to(ROOT).as_posix()
        for package in ("mdm", "commands", "enrollment", "profiles", "web")
        for path in (ROOT / package).rglob("*.py")
        if "[0-9+" in path.read_text()
    ]
    assert copies == ["commands/lock_screen.py"], copies
    assert PHONE_PATTERN.startswith("^[0-9+")
