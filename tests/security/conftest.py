"""Hostile-device tests reuse the enrollment fixtures: an app with the built-in CA, an org tree,
a push topic and enrollment tokens (tests/enrollment/conftest.py)."""

from tests.enrollment.conftest import (  # noqa: F401  (fixtures)
    enroll_app,
    enroll_client,
    enroll_settings,
    live_server,
    make_token,
    provisioned_ca,
    push_topic,
    tree,
)
