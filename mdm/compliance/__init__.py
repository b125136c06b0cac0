"""Compliance: rules (one small function each), evaluation, findings that open and close themselves.

Importing `mdm.compliance.evaluation` registers evaluation after every inventory result.
"""
