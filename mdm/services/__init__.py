"""Services of the device fleet: devices, org units, inventory, compliance, continuity, alerts, backup."""
