"""Composition roots: the app factory, the CLI, the server and the scheduler. Nothing imports them."""
