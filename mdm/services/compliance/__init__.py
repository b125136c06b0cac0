"""Compliance: rules (one small function each), evaluation, findings that open and close themselves.

Importing `mdm.services.compliance.evaluation` registers evaluation of every device whose inventory changed,
once per transaction, before it commits (mdm.services.inventory.events).
"""
