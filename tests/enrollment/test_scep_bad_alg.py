"""RFC 8894 section 3.2.1.4: a request using an algorithm the server does not accept is answered
with failInfo badAlg (0), not badMessageCheck (1). MD5 and SHA-224 signatures and a Blowfish
envelope are what old clients still send; the challenge is never spent on them."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from enrollment import tokens
from mdm.doors.scep.attributes import FailInfo
from mdm.ground.config import Settings
from mdm.ground.models import DeviceCertificate
from tests.enrollment.conftest import ADMIN
from tests.support.scep_client import ScepClient


@pytest.fixture
def secret(session: Session, tree: Any, make_token: Any, enroll_settings: Settings) -> str:
    created = make_token(tree.ambulance, uses=5)
    value = tokens.issue_enrollment_challenge(session, enroll_settings, created.token, actor=ADMIN)
    session.commit()
    return value


@pytest.mark.parametrize(
    ("digest", "cipher"),
    [("md5", "aes128_cbc"), ("sha224", "aes128_cbc"), ("sha256", "blowfish_cbc")],
)
def test_refused_algorithms_get_bad_alg(
    enroll_client: Any, secret: str, session: Session, digest: str, cipher: str
) -> None:
    reply = ScepClient(enroll_client).enroll(secret, digest=digest, cipher=cipher).reply
    assert FailInfo.BAD_ALG == "0"
    assert (reply.status, reply.fail_info, reply.message_type) == ("2", FailInfo.BAD_ALG, "3")
    assert session.scalars(select(DeviceCertificate)).all() == []
    # The challenge was not spent: the same device, with accepted algorithms, enrolls.
    assert ScepClient(enroll_client).enroll(secret).reply.status == "0"


def test_a_broken_signature_is_still_bad_message_check(enroll_client: Any, secret: str) -> None:
    tampered = ScepClient(enroll_client).enroll(secret, tamper=True).reply
    assert (tampered.status, tampered.fail_info) == ("2", FailInfo.BAD_MESSAGE_CHECK)
