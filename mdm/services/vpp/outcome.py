"""What a license request came to.

To be replaced by mdm.services.apps.licensing.LicenseOutcome at merge: the `apps` branch defines
the same frozen dataclass next to its LicenseProvider protocol; this copy has its exact shape so
the lead swaps one import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LicenseState = Literal["assigned", "pending", "unavailable", "not_configured"]


@dataclass(frozen=True)
class LicenseOutcome:
    # "pending": an asynchronous assignment (or release) was requested and not yet confirmed.
    state: LicenseState
    reason: str | None = None
