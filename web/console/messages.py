"""Messages the console shows that other layers wrote in English: marshmallow's validation
messages and the org-unit service's refusals. The console says them in the reader's language;
what it cannot recognise it shows as given (an English sentence there is a bug the page test
in tests/web/test_console_japanese.py finds).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask_babel import get_locale
from flask_babel import gettext as _

from mdm.ground.models import OrgUnitKind
from web.console.blueprint import bp


def _kind(kind: str | None) -> str:
    return OrgUnitKind.LABELS[kind][0] if kind in OrgUnitKind.LABELS else str(kind)


# Each pattern is anchored; the groups feed the translated sentence.
_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"Missing data for required field\."), lambda m: _("Required.")),
    (re.compile(r"Field may not be null\."), lambda m: _("Required.")),
    (re.compile(r"Not a valid integer\."), lambda m: _("Enter a whole number.")),
    (re.compile(r"Not a valid number\."), lambda m: _("Enter a number.")),
    (re.compile(r"Not a valid date\."), lambda m: _("Enter a date (YYYY-MM-DD).")),
    (re.compile(r"Not a valid (?:string|boolean|list)\."), lambda m: _("Invalid value.")),
    (re.compile(r"Invalid value\."), lambda m: _("Invalid value.")),
    (re.compile(r"Unknown field\."), lambda m: _("Unknown field.")),
    (
        re.compile(r"Length must be between (\d+) and (\d+)\."),
        lambda m: _("Enter %(min)s to %(max)s characters.", min=m[1], max=m[2]),
    ),
    (
        re.compile(r"Shorter than minimum length (\d+)\."),
        lambda m: _("Enter at least %(min)s characters.", min=m[1]),
    ),
    (
        re.compile(r"Longer than maximum length (\d+)\."),
        lambda m: _("Enter at most %(max)s characters.", max=m[1]),
    ),
    (
        re.compile(r"Must be greater than or equal to (\S+) and less than or equal to (\S+)\."),
        lambda m: _("Enter a value from %(min)s to %(max)s.", min=m[1], max=m[2]),
    ),
    (
        re.compile(r"Must be greater than or equal to (\S+)\."),
        lambda m: _("Enter %(min)s or more.", min=m[1]),
    ),
    (re.compile(r"Must be less than or equal to (\S+)\."), lambda m: _("Enter %(max)s or less.", max=m[1])),
    (re.compile(r"Must be one of: (.+)\."), lambda m: _("Choose one of: %(choices)s.", choices=m[1])),
    (re.compile(r"String does not match expected pattern\."), lambda m: _("The format is not valid.")),
    # mdm.services.orgunits
    (
        re.compile(r"a (\w+) \(.+\) must have a parent unit"),
        lambda m: _("A %(kind)s must have a parent unit.", kind=_kind(m[1])),
    ),
    (
        re.compile(r"a (\w+) \(.+\) cannot be placed under a (\w+); allowed: .*"),
        lambda m: _("A %(kind)s cannot be placed under a %(parent)s.", kind=_kind(m[1]), parent=_kind(m[2])),
    ),
    (
        re.compile(r"code '(.+)' is already used by (.+)"),
        lambda m: _("The code %(code)s is already used by %(unit)s.", code=m[1], unit=m[2]),
    ),
    (re.compile(r"no org unit with id \d+"), lambda m: _("Unknown unit.")),
    (re.compile(r"only a 隊 \(unit\) has a unit type"), lambda m: _("Only a 隊 has a unit type.")),
    (
        re.compile(r"a unit cannot be moved under itself or one of its own units"),
        lambda m: _("A unit cannot be moved under itself or one of its own units."),
    ),
    (re.compile(r"cannot be changed here"), lambda m: _("This cannot be changed here.")),
    # enrollment.android_settings
    (
        re.compile(r"must be the https:// address of the agent APK"),
        lambda m: _("must be the https:// address of the agent APK"),
    ),
]


# Services that do not know the reader's language write "日本語 / English" (e.g. an Android token
# refused while provisioning is unusable).
_BILINGUAL = re.compile(r"(?P<ja>.*[\u3040-\u30ff\u4e00-\u9fff].*?) / (?P<en>[\x20-\x7e]+)", re.S)


@bp.app_template_filter("field_message")
def field_message(message: object) -> str:
    text = str(message)
    for pattern, say in _PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            return say(match)
    bilingual = _BILINGUAL.fullmatch(text)
    if bilingual:  # a service's "日本語 / English" message: the reader's half
        return bilingual["ja"] if str(get_locale() or "ja") == "ja" else bilingual["en"]
    return text
