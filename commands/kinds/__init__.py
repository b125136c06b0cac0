"""Command definitions, one module per family; importing this package registers them all."""

from commands.kinds import device_control, inventory, security  # noqa: F401
