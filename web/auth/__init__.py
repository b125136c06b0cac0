"""Console authentication: passwords, TOTP, recovery codes, lockout, sessions and API tokens."""
