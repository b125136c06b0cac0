"""Consistent, encrypted backups of an instance (database, secrets, CA) and their restore."""
