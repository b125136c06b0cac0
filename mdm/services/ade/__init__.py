"""Automated Device Enrollment: Apple Business Manager's server token, the device assignment
service (client, sync, profiles), the units ABM devices are for, and their enrollment."""
