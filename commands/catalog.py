"""The command catalog: the explicit list of every command Hikeshi can send.

Each command is one class in one module of commands/kinds (its schema, Apple rendering, Android
equivalent, who may send it, what its result does). Adding a command is that module, its line in
CATALOG below, and a test. The queue, the result recording, the API, the console and the CLI read
everything from here; nothing registers itself at import.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from commands.command_type import (
    CONFIGURED_EXPIRY,
    CommandParamsError,
    CommandType,
    DeliveryContext,
    PlatformEquivalent,
    Priority,
    Sender,
    UnknownCommand,
)
from commands.kinds.activation_lock_bypass_code import ActivationLockBypassCode
from commands.kinds.available_os_updates import AvailableOSUpdates
from commands.kinds.certificate_list import CertificateList
from commands.kinds.clear_app_data import ClearAppData
from commands.kinds.clear_passcode import ClearPasscode
from commands.kinds.declarative_management import DeclarativeManagement
from commands.kinds.device_configured import DeviceConfigured
from commands.kinds.device_information import DeviceInformation
from commands.kinds.device_location import DeviceLocation
from commands.kinds.device_lock import DeviceLock
from commands.kinds.disable_lost_mode import DisableLostMode
from commands.kinds.enable_lost_mode import EnableLostMode
from commands.kinds.erase_device import EraseDevice
from commands.kinds.install_application import InstallApplication
from commands.kinds.install_enterprise_application import InstallEnterpriseApplication
from commands.kinds.install_profile import InstallProfile
from commands.kinds.installed_application_list import InstalledApplicationList
from commands.kinds.managed_application_list import ManagedApplicationList
from commands.kinds.mdm_options import MDMOptionsSettings
from commands.kinds.os_update_status import OSUpdateStatus
from commands.kinds.play_lost_mode_sound import PlayLostModeSound
from commands.kinds.profile_list import ProfileList
from commands.kinds.relinquish_ownership import RelinquishOwnership
from commands.kinds.remove_application import RemoveApplication
from commands.kinds.remove_profile import RemoveProfile
from commands.kinds.reset_password import ResetPassword
from commands.kinds.restart_device import RestartDevice
from commands.kinds.schedule_os_update import ScheduleOSUpdate
from commands.kinds.security_info import SecurityInfo
from commands.kinds.shut_down_device import ShutDownDevice

__all__ = [
    "CATALOG",
    "CONFIGURED_EXPIRY",
    "Catalog",
    "CommandParamsError",
    "CommandType",
    "DeliveryContext",
    "PlatformEquivalent",
    "Priority",
    "Sender",
    "UnknownCommand",
    "all_command_types",
    "equivalent_for",
    "get_command_type",
]


class Catalog:
    """Command classes by request type. Build one from a list; a request type appears once."""

    def __init__(self, kinds: Iterable[type[CommandType]]) -> None:
        self._kinds: dict[str, CommandType] = {}
        for kind in kinds:
            if kind.request_type in self._kinds:
                raise ValueError(f"{kind.request_type} is in the catalog twice")
            self._kinds[kind.request_type] = kind()

    def __contains__(self, request_type: object) -> bool:
        return request_type in self._kinds

    def get(self, request_type: str) -> CommandType:
        try:
            return self._kinds[request_type]
        except KeyError:
            raise UnknownCommand(request_type) from None

    def all(self) -> list[CommandType]:
        return sorted(self._kinds.values(), key=lambda c: c.request_type)

    def in_menu_order(self) -> list[CommandType]:
        """The hotline's commands first, in catalog order (what a night shift needs first), then
        the rest by name."""
        hotline = [k for k in self._kinds.values() if k.sent_by is Sender.HOTLINE]
        rest = sorted(
            (k for k in self._kinds.values() if k.sent_by is not Sender.HOTLINE), key=lambda c: c.request_type
        )
        return [*hotline, *rest]

    def equivalent_for(self, request_type: str, platform: str) -> PlatformEquivalent | None:
        kind = self._kinds.get(request_type)
        if kind is None or platform != "android":
            return None
        return kind.android

    def with_kinds(self, kinds: Sequence[type[CommandType]]) -> Catalog:
        """This catalog and `kinds` (a test's own command, for one)."""
        return Catalog([*(type(k) for k in self._kinds.values()), *kinds])


CATALOG = Catalog(
    [
        # The hotline's, in the order its operators reach for them.
        DeviceLock,
        EnableLostMode,
        DeviceLocation,
        PlayLostModeSound,
        DisableLostMode,
        # Two people.
        EraseDevice,
        # Fleet administration.
        ClearPasscode,
        ResetPassword,
        ClearAppData,
        RelinquishOwnership,
        RestartDevice,
        ShutDownDevice,
        InstallProfile,
        RemoveProfile,
        # Activation Lock on supervised devices (commands.activation_lock queues them).
        MDMOptionsSettings,
        ActivationLockBypassCode,
        DeviceConfigured,
        # Inventory.
        DeviceInformation,
        SecurityInfo,
        InstalledApplicationList,
        ProfileList,
        CertificateList,
        # OS updates (mdm.services.osupdates): the commands before iOS 17, the declarative channel after.
        AvailableOSUpdates,
        OSUpdateStatus,
        ScheduleOSUpdate,
        DeclarativeManagement,
        # Apps (commands.app_enforcement queues them from each unit's required and blocked apps).
        InstallApplication,
        RemoveApplication,
        InstallEnterpriseApplication,
        ManagedApplicationList,
    ]
)


def get_command_type(request_type: str) -> CommandType:
    return CATALOG.get(request_type)


def all_command_types() -> list[CommandType]:
    return CATALOG.all()


def equivalent_for(request_type: str, platform: str) -> PlatformEquivalent | None:
    return CATALOG.equivalent_for(request_type, platform)
