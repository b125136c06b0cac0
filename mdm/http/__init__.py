"""HTTP pieces shared by every surface: health, readiness, database-outage answers."""
