"""Result parsers, one module per result kind; importing this package registers them all."""

from mdm.services.inventory.parsers import (
    applications,
    certificates,
    device_information,
    profiles,
    security_info,
)

__all__ = ["applications", "certificates", "device_information", "profiles", "security_info"]
