"""Alerts for administrators: stored, acknowledged with a comment, delivered to signed webhooks."""
