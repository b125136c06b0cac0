"""Activation Lock of one supervised Apple device: its escrowed bypass code and the setting the
device last acknowledged.

The bypass code clears Activation Lock on a wiped tablet that comes back locked to an Apple ID
nobody at the HQ knows; it is a credential, so only its sealed form (mdm.ground.secretbox) is
stored. Kept apart from `devices`: one concept, read only by the Activation Lock service.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from mdm.ground.models.base import Base


class DeviceActivationLock(Base):
    __tablename__ = "device_activation_locks"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    # The code as the ActivationLockBypassCode command answered it, sealed; None: not escrowed.
    bypass_code_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    bypass_code_escrowed_at: Mapped[datetime | None]
    bypass_code_command_uuid: Mapped[str | None] = mapped_column(String(64))
    # The device acknowledged the command but gave no code (Apple keeps it only for 15 days after
    # supervision; an unsupervised or Activation-Lock-less device has none).
    bypass_code_unavailable_at: Mapped[datetime | None]
    # ActivationLockAllowedWhileSupervised as the device last acknowledged it (Settings command,
    # MDMOptions); None: never acknowledged one from Hikeshi, so unknown.
    allowed_acknowledged: Mapped[bool | None]
    allowed_acknowledged_at: Mapped[datetime | None]
