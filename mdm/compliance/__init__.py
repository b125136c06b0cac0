"""Compliance: rules (one small function each), evaluation, findings that open and close themselves.

Importing `mdm.compliance.evaluation` registers evaluation of every device whose inventory changed,
once per transaction, before it commits (mdm.inventory.events).
"""
