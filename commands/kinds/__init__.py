"""Command definitions, one module per family; importing this package registers them all."""

from commands.kinds import android, device_control, inventory, lost_mode, profiles, security  # noqa: F401
