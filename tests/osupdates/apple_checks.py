"""Checks of what Hikeshi sends for OS updates against Apple's schema: commands and check-in
messages against mdm/commands and mdm/checkin, declarations against declarative/declarations when
the schema copy has that folder (Apple publishes it beside mdm/)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.apple_schema import _Walker, schema_dir_or_skip


def _root() -> Path:
    return schema_dir_or_skip().parent.parent


def _document(folder: str, name: str) -> dict[str, Any]:
    return yaml.safe_load((_root() / folder / name).read_text(encoding="utf-8"))


def command_problems(request_type: str, keys: dict[str, Any]) -> list[str]:
    for path in sorted((_root() / "mdm" / "commands").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if (doc.get("payload") or {}).get("requesttype") == request_type:
            walker = _Walker("iOS")
            walker.check_dict(keys, list(doc.get("payloadkeys") or []), request_type)
            return walker.problems
    return [f"{request_type}: not in Apple's schema"]


def _on_ios(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The keys an iPad can send: Apple marks some macOS-only keys required for every platform."""
    kept = []
    for spec in specs:
        if ((spec.get("supportedOS") or {}).get("iOS") or {}).get("introduced") == "n/a":
            continue
        if spec.get("subkeys"):
            spec = {**spec, "subkeys": _on_ios(list(spec["subkeys"]))}
        kept.append(spec)
    return kept


def response_problems(file_name: str, answer: dict[str, Any]) -> list[str]:
    doc = _document("mdm/commands", file_name)
    walker = _Walker("iOS")
    walker.check_dict(answer, _on_ios(list(doc.get("responsekeys") or [])), file_name)
    return walker.problems


# Required only on the user channel or a user enrollment, which Hikeshi declines.
USER_CHANNEL_KEYS = ("EnrollmentID", "EnrollmentUserID", "UserLongName", "UserShortName", "UserID")


def checkin_problems(message: dict[str, Any]) -> list[str]:
    doc = _document("mdm/checkin", "declarativemanagement.yaml")
    keys = [k for k in doc["payloadkeys"] if k["key"] not in USER_CHANNEL_KEYS]
    walker = _Walker(None)
    walker.check_dict(message, keys, "DeclarativeManagement")
    return walker.problems


def declaration_problems(declaration: dict[str, Any]) -> list[str]:
    """Type, Identifier, ServerToken, Payload; the payload against its declaration's schema file."""
    problems = [
        f"missing {k}" for k in ("Type", "Identifier", "ServerToken", "Payload") if k not in declaration
    ]
    kind, _, rest = declaration["Type"].removeprefix("com.apple.").partition(".")
    folder = _root() / "declarative" / "declarations" / f"{kind}s"
    path = folder / f"{rest}.yaml"
    if folder.parent.is_dir():
        if not path.is_file():
            return [*problems, f"{declaration['Type']}: no schema file {path.name}"]
        keys = list(yaml.safe_load(path.read_text(encoding="utf-8")).get("payloadkeys") or [])
    else:
        # This copy of Apple's schema has only mdm/: the keys of the three declarations as Apple
        # documents them (declarative/declarations in apple/device-management), in its YAML form.
        keys = FALLBACK_KEYS[declaration["Type"]]
    walker = _Walker(None)
    walker.check_dict(declaration["Payload"], keys, declaration["Type"])
    return problems + walker.problems


def _key(name: str, kind: str, presence: str = "required", **more: Any) -> dict[str, Any]:
    return {"key": name, "type": kind, "presence": presence, **more}


FALLBACK_KEYS: dict[str, list[dict[str, Any]]] = {
    "com.apple.configuration.softwareupdate.enforcement.specific": [
        _key("TargetOSVersion", "<string>"),
        _key("TargetBuildVersion", "<string>", "optional"),
        _key("TargetLocalDateTime", "<string>"),
        _key("DetailsURL", "<string>", "optional"),
    ],
    "com.apple.configuration.management.status-subscriptions": [
        _key(
            "StatusItems",
            "<array>",
            subkeys=[_key("StatusItemsItem", "<dictionary>", subkeys=[_key("Name", "<string>")])],
        )
    ],
    "com.apple.activation.simple": [
        _key(
            "StandardConfigurations",
            "<array>",
            subkeys=[_key("StandardConfigurationsItem", "<string>")],
        ),
        _key("Predicate", "<string>", "optional"),
    ],
}


LOCAL_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\Z")
