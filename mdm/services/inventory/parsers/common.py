"""What every inventory parser needs: only Acknowledged results are parsed."""

from __future__ import annotations

from typing import Any

from mdm.ground.models import Command


def acknowledged(command: Command, report: dict[str, Any]) -> bool:
    return report.get("Status") == "Acknowledged" and command.device is not None
