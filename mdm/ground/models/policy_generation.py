"""The generation of everything an Android agent's policy is built from that is not the device's
own row: a number the database raises (triggers, migration 0025) at every write to those tables,
whoever writes them and however. A sync whose device got its policy at the current generation,
with the same device fields (mdm.services.android_channel.policy_basis), answers "unchanged"
without reading or rendering the policy again (issue 18)."""

from __future__ import annotations

from sqlalchemy import BigInteger
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground.models.base import Base

# The tables an agent policy is built from (profiles and their assignments, the unit tree with its
# settings, the OS update policies, the app rules with their apps and packages, the built-in CA a
# profile may trust). A write to any of them raises the generation. tests/android/
# test_policy_basis.py checks that the policy reads no other table and that each has its trigger.
POLICY_INPUT_TABLES = (
    "app_packages",
    "apps",
    "certificate_authorities",
    "org_units",
    "os_update_policies",
    "profile_assignments",
    "profiles",
    "unit_app_rules",
)


class PolicyGeneration(Base):
    """One row (id 1)."""

    __tablename__ = "policy_generation"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=1)
