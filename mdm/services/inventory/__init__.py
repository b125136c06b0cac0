"""Inventory: what each device is, how it is secured and what it has installed.

Parsers (one module per result kind) are called by the inventory commands whose answers they read
(commands.kinds.device_information and its siblings).
"""
