"""The apps report: every app on the tablets the user sees, how many have it, how many are not
allowed to."""

from __future__ import annotations

from flask import render_template, request
from flask_babel import gettext as _
from marshmallow import fields, validate

from mdm.doors.appctx import db_session
from web.api.schemas import Id, Text
from web.console.blueprint import bp
from web.console.forms import FormSchema, load_form
from web.console.guard import current_principal, needs
from web.queries import apps_report, visible_units
from web.rbac import Permission


class AppReportForm(FormSchema):
    q = Text(validate=validate.Length(max=100))
    unit_id = Id(strict=False)
    unauthorized = fields.Boolean(load_default=False)
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))


@bp.route("/apps")
@needs(Permission.DEVICE_READ)
def apps() -> str:
    session = db_session()
    principal = current_principal()
    data, errors = load_form(AppReportForm(), request.args)
    if data.get("unit_id") is not None and not principal.sees_unit(data["unit_id"]):
        errors = {"unit_id": [_("Unknown unit.")]}
    if errors:
        data = {}
    result = apps_report(session, principal, {**data, "per_page": 100})
    return render_template(
        "console/apps.html",
        result=result,
        filters=request.args,
        query={k: v for k, v in request.args.items() if k != "page" and v},
        errors=errors,
        units=visible_units(session, principal),
    )
