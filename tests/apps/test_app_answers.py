"""What devices and uploads say, read without the HTTP around them: ManagedApplicationList answers
as devices send them (partial, with keys Apple has not defined, with odd types, filtered by
Identifiers), and APKs signed with the v1 and v2 schemes."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from mdm.ground import clock
from mdm.ground.models import Device, EnrollmentState
from mdm.services.apps.apk import ApkError, read_apk
from mdm.services.apps.state import apply_managed_application_list, states_of
from tests.apps.packages import build_apk, signer
from tests.apps.support import managed_list_entry, managed_list_problems


@pytest.fixture
def device(session):
    row = Device(
        platform="apple",
        udid="UDID-ANSWERS",
        enrollment_state=EnrollmentState.ENROLLED,
        created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    return row


def test_partial_and_odd_answers_are_read_for_what_they_say(session, device):
    answer = {
        "jp.fire.a": managed_list_entry("Managed", ExternalVersionIdentifier=871234),
        "jp.fire.b": {"Status": "ManagedButUninstalled"},  # a partial answer: only the status
        "jp.fire.c": {"Status": 7, "HasConfiguration": "yes"},  # odd types: unknown, not guessed
        "": {"Status": "Managed"},
        "jp.fire.d": ["not", "a", "dictionary"],
    }
    assert managed_list_problems({"jp.fire.a": answer["jp.fire.a"]}) == []
    assert apply_managed_application_list(session, device, answer) == 3
    states = states_of(session, device)
    assert sorted(states) == ["jp.fire.a", "jp.fire.b", "jp.fire.c"]
    assert (states["jp.fire.a"].managed_status, states["jp.fire.a"].external_version_id) == (
        "Managed",
        871234,
    )
    assert states["jp.fire.b"].managed_status == "ManagedButUninstalled"
    assert (states["jp.fire.c"].managed_status, states["jp.fire.c"].has_configuration) == ("Unknown", None)

    # A query for one app says nothing about the others; a full one that no longer lists an app does.
    apply_managed_application_list(session, device, {}, asked_for=["jp.fire.b"])
    states = states_of(session, device)
    assert states["jp.fire.a"].managed_status == "Managed"
    # No unit requires b and the device no longer manages it: nothing is left to track.
    assert "jp.fire.b" not in states or states["jp.fire.b"].managed_status is None
    apply_managed_application_list(session, device, {})
    assert (
        "jp.fire.a" not in states_of(session, device)
        or states_of(session, device)["jp.fire.a"].managed_status is None
    )
    assert apply_managed_application_list(session, device, "not a dictionary") == 0


@pytest.mark.parametrize("scheme", ["v1", "v2"])
def test_an_apk_names_its_package_version_and_signer(scheme):
    cert, _key = signer("vendor")
    apk = build_apk("jp.fire.ems.records", 31, "3.1", signed_by=signer("vendor"), scheme=scheme)
    facts = read_apk(apk)
    assert (facts.package_name, facts.version_code, facts.version_name) == ("jp.fire.ems.records", 31, "3.1")
    assert facts.signing_cert_sha256 == hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    assert (facts.sha256, facts.signing_scheme) == (hashlib.sha256(apk).hexdigest(), scheme)


def test_an_unsigned_apk_is_refused():
    apk = build_apk("jp.fire.x", 1, scheme="v1")
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(apk)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            if not item.filename.startswith("META-INF/"):
                dst.writestr(item, src.read(item))
    with pytest.raises(ApkError, match="not signed"):
        read_apk(out.getvalue())
