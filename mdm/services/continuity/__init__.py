"""Continuity: unit plans, spares, readiness (ready / degraded / critical) and its dispatch feed.

The wiring (mdm.roots.wiring) attaches the listeners that recompute readiness after every device
change (continuity.hooks) and deliver readiness webhooks after commit (continuity.webhooks).
"""

from mdm.services.continuity.plans import (
    DEFAULT_PLANS,
    Plan,
    PlanError,
    PlanSchema,
    default_plan,
    plan_for,
    reset_plan,
    set_plan,
)
from mdm.services.continuity.readiness import (
    Rollup,
    UnitReadiness,
    current_readiness,
    events_after,
    hq_rollup,
    last_event_id,
    readiness_history,
    recompute,
    station_rollup,
)
from mdm.services.continuity.spares import (
    Spare,
    SpareError,
    StationSpares,
    SwapOutcome,
    mark_spare,
    spares_by_station,
    swap_spare,
    unmark_spare,
)
from mdm.services.continuity.webhooks import ReadinessNotifier, readiness_job

__all__ = [
    "DEFAULT_PLANS",
    "Plan",
    "PlanError",
    "PlanSchema",
    "ReadinessNotifier",
    "Rollup",
    "Spare",
    "SpareError",
    "StationSpares",
    "SwapOutcome",
    "UnitReadiness",
    "current_readiness",
    "default_plan",
    "events_after",
    "hq_rollup",
    "last_event_id",
    "mark_spare",
    "plan_for",
    "readiness_history",
    "readiness_job",
    "recompute",
    "reset_plan",
    "set_plan",
    "spares_by_station",
    "station_rollup",
    "swap_spare",
    "unmark_spare",
]
