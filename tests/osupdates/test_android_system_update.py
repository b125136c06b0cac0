"""Android system updates from the unit's update policy (issue #21 item 5): the agent's policy
carries `systemUpdate` (AUTOMATIC, WINDOWED outside the unit's blocked windows, POSTPONE),
inherited down the org tree, valid against the Android Management API's own discovery document
(the copy google-api-python-client ships), and a changed policy changes the policy version."""

from __future__ import annotations

from typing import Any

import pytest

from mdm.ground.audit import Actor
from mdm.ground.ca import ensure_ca
from mdm.services.android_channel.policy import current_policy
from mdm.services.osupdates.policy import set_update_policy
from tests.profiles.test_android_policy import _android, units  # noqa: F401  (fixture)
from tests.support.amapi_schema import policy_problems

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")


def _check_system_update(policy: dict[str, Any]) -> dict[str, Any]:
    system_update = policy["systemUpdate"]
    assert policy_problems({"systemUpdate": system_update}) == []
    if system_update["type"] == "WINDOWED":
        assert 0 <= system_update["startMinutes"] <= 1439 and 0 <= system_update["endMinutes"] <= 1439
    return system_update


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"android_mode": "automatic"}, {"type": "AUTOMATIC"}),
        ({"android_mode": "postpone"}, {"type": "POSTPONE"}),
        # No window blocked: four hours from the install time.
        (
            {"android_mode": "windowed", "install_time": "01:30"},
            {"type": "WINDOWED", "startMinutes": 90, "endMinutes": 330},
        ),
        # Two shift changes: the longest free stretch, 19:00 → 07:30 across midnight.
        (
            {
                "android_mode": "windowed",
                "blocked_windows": [{"start": "07:30", "end": "09:30"}, {"start": "17:00", "end": "19:00"}],
            },
            {"type": "WINDOWED", "startMinutes": 1140, "endMinutes": 450},
        ),
    ],
)
def test_system_update_follows_the_unit_policy(session, settings, units, values, expected):  # noqa: F811
    ensure_ca(session, settings)
    device = _android(session, units["unit"])
    before = current_policy(session, device)
    assert "systemUpdate" not in before.policy
    # Set on the HQ, inherited by the unit the tablet is in.
    set_update_policy(session, ADMIN, units["hq"].id, **values)
    after = current_policy(session, device)
    assert _check_system_update(after.policy) == expected
    assert after.version != before.version


def test_a_unit_overrides_what_it_inherits(session, settings, units):  # noqa: F811
    ensure_ca(session, settings)
    device = _android(session, units["unit"])
    set_update_policy(session, ADMIN, units["hq"].id, android_mode="automatic")
    set_update_policy(session, ADMIN, units["unit"].id, android_mode="postpone")
    assert _check_system_update(current_policy(session, device).policy) == {"type": "POSTPONE"}
    set_update_policy(session, ADMIN, units["unit"].id, android_mode=None)  # inherit again
    assert _check_system_update(current_policy(session, device).policy) == {"type": "AUTOMATIC"}
