"""Inventory: what each device is, how it is secured and what it has installed.

Parsers (one module per result kind) register with `commands.results.on_result` when
`mdm.services.inventory.parsers` is imported (mdm.roots.wiring.load_command_catalog does it).
"""
