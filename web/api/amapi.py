"""Android Management API mode: the enterprise binding (status, service account, signup, enterprise,
notifications), a unit's Android mode, and a unit's AMAPI enrollment tokens.

The service account's key never comes back in an answer (only its e-mail, project and key id);
an enrollment token's QR payload is answered once, when the token is made (the printable sheet in
the console shows it again to those who may enroll tablets).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, TypeVar

from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from mdm.doors.appctx import db_session, settings
from mdm.ground.amapi_client import AmapiClient, AmapiError
from mdm.ground.audit import Actor
from mdm.ground.models import AmapiEnrollmentToken, AndroidMode, OrgUnit
from mdm.services.amapi import enterprise as binding
from mdm.services.amapi import tokens
from mdm.services.amapi.client_factory import amapi_client_for
from mdm.services.amapi.credential import CredentialError, store_credential
from mdm.services.amapi.enterprise import EnterpriseError
from mdm.services.amapi.mode import ModeError, android_mode, set_android_mode
from mdm.services.amapi.policies import record_policy_failure, sync_unit_policy
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, permission
from web.errors import ApiError, field_error
from web.queries import visible_unit
from web.rbac import Permission

blp = ApiBlueprint("amapi", __name__, url_prefix="/api/v1", description="Android Management API")

CALLBACK_PATH = "/console/settings/amapi/callback"
Step = TypeVar("Step")


class CredentialInfoSchema(Schema):
    client_email = fields.String(allow_none=True)
    project_id = fields.String(allow_none=True)
    private_key_id = fields.String(allow_none=True)


class EnterpriseStatusSchema(Schema):
    state = fields.String(
        metadata={"description": "unconfigured, credential_stored, signup_started or bound"}
    )
    credential = fields.Nested(CredentialInfoSchema, allow_none=True)
    enterprise_name = fields.String(allow_none=True)
    display_name = fields.String(allow_none=True)
    signup_url = fields.String(allow_none=True)
    pubsub_topic = fields.String(allow_none=True)
    pubsub_subscription = fields.String(allow_none=True)
    updated_at = fields.DateTime(allow_none=True)
    updated_by = fields.String(allow_none=True)


class CredentialUploadSchema(Schema):
    service_account = fields.Dict(required=True, metadata={"description": "the JSON key file's object"})


class SignupSchema(Schema):
    admin_email = fields.Email(load_default=None, allow_none=True)


class SignupAnswerSchema(Schema):
    signup_url = fields.String()


class EnterpriseCreateSchema(Schema):
    enterprise_token = fields.String(required=True, validate=validate.Length(min=1, max=512))
    display_name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=255))


class NotificationsSchema(Schema):
    pubsub_topic = fields.String(required=True, validate=validate.Length(min=1, max=255))
    pubsub_subscription = fields.String(required=True, validate=validate.Length(min=1, max=255))


class AndroidModeSchema(Schema):
    android_mode = fields.String(required=True, allow_none=True, validate=validate.OneOf(AndroidMode.ALL))
    effective = fields.String(dump_only=True)
    policy_error = fields.String(dump_only=True, allow_none=True)


class TokenCreateSchema(Schema):
    days = fields.Integer(
        load_default=tokens.DEFAULT_DAYS,
        strict=True,
        validate=validate.Range(min=tokens.MIN_DAYS, max=tokens.MAX_DAYS),
    )


class AmapiTokenSchema(Schema):
    id = fields.Integer()
    org_unit_id = fields.Integer()
    token_name = fields.String()
    policy_name = fields.String()
    expires_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    created_by = fields.String()
    revoked_at = fields.DateTime(allow_none=True)
    state = fields.Method("_state")

    def _state(self, row: AmapiEnrollmentToken) -> str:
        return tokens.token_state(row)  # a row, or the SimpleNamespace of a new one


class AmapiTokenCreatedSchema(AmapiTokenSchema):
    qr_code = fields.String(metadata={"description": "the provisioning QR code's text (shown once here)"})


def _unscoped() -> None:
    # The enterprise is the whole fleet's: a principal scoped to a subtree does not bind it.
    if current_principal().scoped:
        raise ApiError(403, "the enterprise binding needs an unscoped principal", code="forbidden")


def _client() -> AmapiClient:
    client = amapi_client_for(db_session(), settings())
    if client is None:
        raise field_error("service_account", "upload the service account's JSON key first", 409)
    return client


def _google_error(exc: AmapiError) -> ApiError:
    # Google's refusal, said as it is (no key or token is ever in it); unreachable is a 502.
    status = 502 if exc.transient else 409
    return ApiError(status, f"Android Management API: {exc}", code="amapi_refused")


@contextmanager
def _google() -> Iterator[AmapiClient]:
    """Google's client for one step; the step's refusals answered as they are said: ours (the
    binding's state, a field) a 409 naming the field, Google's a 409 or a 502."""
    try:
        with _client() as client:
            yield client
    except EnterpriseError as exc:
        raise field_error(exc.field, str(exc).split(": ", 1)[-1], 409) from None
    except AmapiError as exc:
        raise _google_error(exc) from None


def _binding_step(step: Callable[[Session, AmapiClient, Actor], Step]) -> Step:
    """One step of the enterprise binding, by an unscoped principal, with Google's client,
    committed once it went through."""
    _unscoped()
    session = db_session()
    with _google() as client:
        done = step(session, client, current_principal().actor)
    session.commit()
    return done


def callback_url() -> str:
    """Where Google sends the administrator's browser back after the signup: the console."""
    return settings().public_url.rstrip("/") + CALLBACK_PATH


def sync_policy_after_mode_change(session: Session, unit_id: int) -> str | None:
    """Patch the unit's AMAPI policy at once when the unit is (now) in AMAPI mode and the
    enterprise is bound; a failure is recorded on the policy row and said back, never fatal
    (the scheduler tries again). The mode change itself is already committed."""
    if android_mode(session, unit_id) != AndroidMode.AMAPI or not binding.bound_enterprise(session):
        return None
    client = amapi_client_for(session, settings())
    if client is None:
        return None
    policy_error = None
    with client:
        try:
            sync_unit_policy(session, settings(), client, unit_id, actor=current_principal().actor)
        except (AmapiError, EnterpriseError) as exc:
            session.rollback()
            record_policy_failure(session, unit_id, exc)
            policy_error = str(exc)
    session.commit()
    return policy_error


def _unit_or_404(unit_id: int) -> OrgUnit:
    unit = visible_unit(db_session(), current_principal(), unit_id)
    if unit is None:
        raise ApiError(404, f"no org unit with id {unit_id}")
    return unit


@blp.route("/amapi/enterprise", methods=["GET"])
@blp.response(200, EnterpriseStatusSchema)
@permission(Permission.SETTINGS_READ)
def enterprise_status() -> Any:
    """Where the binding stands; the service account by e-mail, project and key id, never its key."""
    return binding.status(db_session())


@blp.route("/amapi/credential", methods=["POST"])
@blp.arguments(CredentialUploadSchema)
@blp.response(200, EnterpriseStatusSchema)
@permission(Permission.SETTINGS_WRITE)
def upload_credential(body: dict[str, Any]) -> Any:
    """Store the service account's JSON key (checked, sealed; replaces the one stored)."""
    _unscoped()
    session = db_session()
    try:
        store_credential(
            session, settings(), json.dumps(body["service_account"]).encode(), actor=current_principal().actor
        )
    except CredentialError as exc:
        raise ApiError(400, str(exc), fields={"service_account": [str(exc)]}) from None
    session.commit()
    return binding.status(session)


@blp.route("/amapi/signup", methods=["POST"])
@blp.arguments(SignupSchema)
@blp.response(200, SignupAnswerSchema)
@permission(Permission.SETTINGS_WRITE)
def start_signup(body: dict[str, Any]) -> Any:
    """Ask Google for the signup URL the administrator opens; Google sends the browser back to the
    console, which completes the binding."""
    url = _binding_step(
        lambda session, client, actor: binding.start_signup(
            session, client, callback_url=callback_url(), actor=actor, admin_email=body["admin_email"]
        )
    )
    return {"signup_url": url}


@blp.route("/amapi/signup/complete", methods=["POST"])
@blp.arguments(EnterpriseCreateSchema)
@blp.response(200, EnterpriseStatusSchema)
@permission(Permission.SETTINGS_WRITE)
def complete_signup(body: dict[str, Any]) -> Any:
    """Create the enterprise with the `enterpriseToken` Google gave the administrator's browser."""
    _binding_step(
        lambda session, client, actor: binding.complete_signup(
            session,
            client,
            enterprise_token=body["enterprise_token"],
            display_name=body["display_name"],
            actor=actor,
        )
    )
    return binding.status(db_session())


@blp.route("/amapi/notifications", methods=["PUT"])
@blp.arguments(NotificationsSchema)
@blp.response(200, EnterpriseStatusSchema)
@permission(Permission.SETTINGS_WRITE)
def set_notifications(body: dict[str, Any]) -> Any:
    """The Pub/Sub topic the enterprise publishes to and the pull subscription Hikeshi reads."""
    _binding_step(
        lambda session, client, actor: binding.set_notifications(
            session, client, topic=body["pubsub_topic"], subscription=body["pubsub_subscription"], actor=actor
        )
    )
    return binding.status(db_session())


@blp.route(f"/org-units/<{ID}:unit_id>/android-mode", methods=["PUT"])
@blp.arguments(AndroidModeSchema)
@blp.response(200, AndroidModeSchema)
@permission(Permission.ORGUNIT_WRITE)
def put_android_mode(body: dict[str, Any], unit_id: int) -> Any:
    """How the unit's new Android tablets enroll: agent, amapi, or null (as the unit above says).
    An AMAPI unit's policy is patched at once when the enterprise is bound (else at the next
    scheduler tick after binding); a failure to patch is answered, not fatal."""
    unit = _unit_or_404(unit_id)
    session = db_session()
    try:
        set_android_mode(session, unit, body["android_mode"], actor=current_principal().actor)
    except ModeError as exc:
        raise field_error("android_mode", str(exc)) from None
    session.commit()
    effective = android_mode(session, unit.id)
    policy_error = sync_policy_after_mode_change(session, unit.id)
    return {"android_mode": unit.android_mode, "effective": effective, "policy_error": policy_error}


@blp.route(f"/org-units/<{ID}:unit_id>/amapi-enrollment-tokens", methods=["GET"])
@blp.response(200, AmapiTokenSchema(many=True))
@permission(Permission.ENROLLMENT_READ)
def list_tokens(unit_id: int) -> Any:
    """The unit's AMAPI enrollment tokens, revoked ones included (never a value or QR code)."""
    unit = _unit_or_404(unit_id)
    return tokens.unit_tokens(db_session(), unit.id, include_revoked=True)


@blp.route(f"/org-units/<{ID}:unit_id>/amapi-enrollment-tokens", methods=["POST"])
@blp.arguments(TokenCreateSchema)
@blp.response(201, AmapiTokenCreatedSchema)
@permission(Permission.ENROLLMENT_WRITE)
def create_token(body: dict[str, Any], unit_id: int) -> Any:
    """A new enrollment token for the unit (its tablets must be in AMAPI mode), valid `days`."""
    unit = _unit_or_404(unit_id)
    session = db_session()
    with _google() as client:
        row = tokens.create_token(
            session, settings(), client, unit, actor=current_principal().actor, days=body["days"]
        )
    session.commit()
    # The row's fields and, this once, its QR code's text.
    shown = {name: getattr(row, name) for name in AmapiTokenSchema().fields if name != "state"}
    return SimpleNamespace(**shown, qr_code=tokens.qr_payload(settings(), row))


@blp.route(f"/org-units/<{ID}:unit_id>/amapi-enrollment-tokens/<{ID}:amapi_token_id>", methods=["DELETE"])
@blp.response(200, AmapiTokenSchema)
@permission(Permission.ENROLLMENT_WRITE)
def revoke_token(unit_id: int, amapi_token_id: int) -> Any:
    """Revoke the token (deleted at Google: a QR code already printed enrolls nothing more)."""
    unit = _unit_or_404(unit_id)
    session = db_session()
    row = session.get(AmapiEnrollmentToken, amapi_token_id)
    if row is None or row.org_unit_id != unit.id:
        raise ApiError(404, f"no AMAPI enrollment token {amapi_token_id} in unit {unit_id}")
    try:
        with _client() as client:
            tokens.revoke_token(session, client, row, actor=current_principal().actor)
    except AmapiError as exc:
        raise _google_error(exc) from None
    session.commit()
    return row
