"""Apple's Apps and Books for Organizations (volume purchase): the location token, its assets,
device-based license assignments and the service's asynchronous events."""
