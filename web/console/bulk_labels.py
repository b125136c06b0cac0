"""Asset tags and users of many tablets at once, from a CSV file (issue #19 item 10).

HQ keeps its asset register in a spreadsheet: download the tablets of your units as CSV, fill in
資産番号 and 使用者, upload it, check the changes, apply. Rows are matched by serial number inside
the user's scope. The whole file is checked first; one bad row refuses the file (400, each row and
column named) and nothing is written. A blank cell leaves the value as it is; a single "-" clears
it. Each changed tablet is audited as device.labels_updated through the same function as the
device page and the API.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from mdm.doors.appctx import db_session
from mdm.ground.models import Device, EnrollmentState
from mdm.services.device_labels import LIMITS, DuplicateAssetTag, set_device_labels
from web.console.blueprint import bp
from web.console.guard import current_principal, needs
from web.queries import device_scope
from web.rbac import Permission, Principal

MAX_BYTES = 1024 * 1024
MAX_ROWS = 5000
CLEAR = "-"
# Column names accepted in the header, Japanese (as the template writes them) or English.
COLUMNS = {
    "serial_number": ("シリアル番号", "serial_number", "serial"),
    "asset_tag": ("資産番号", "asset_tag"),
    "assigned_user": ("使用者", "assigned_user", "user"),
}
TEMPLATE_HEADER = ("シリアル番号", "端末名", "資産番号", "使用者")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Change:
    line: int
    device: Device
    values: dict[str, str | None]

    @property
    def diff(self) -> dict[str, tuple[str | None, str | None]]:
        return {
            name: (getattr(self.device, name), value)
            for name, value in self.values.items()
            if getattr(self.device, name) != value
        }


@dataclass
class Upload:
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0
    # (line, column, message): every problem of the file, in order.
    problems: list[tuple[int, str, str]] = field(default_factory=list)


def _decode(data: bytes) -> str | None:
    """UTF-8 (with or without the BOM Excel writes) or Shift_JIS (cp932, Excel's Japanese CSV)."""
    for encoding in ("utf-8-sig", "cp932"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def _cell(value: str | None) -> str:
    text = (value or "").strip()
    # A cell the template protected against spreadsheet formulas ('=...) is read as written.
    if len(text) > 1 and text[0] == "'" and text[1] in _FORMULA_START:
        return text[1:]
    return text


def _header_map(header: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        key = name.strip().lstrip("\ufeff").lower()
        for column, aliases in COLUMNS.items():
            if key in aliases and column not in found:
                found[column] = index
    return found


def _label_value(raw: str, column: str) -> tuple[str | None, str | None]:
    """(value, problem): the new value (None clears) or why the cell is refused."""
    if raw == CLEAR:
        return None, None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        return None, _("must be one line of printable text")
    if len(raw) > LIMITS[column]:
        return None, _("at most %(n)d characters", n=LIMITS[column])
    return raw, None


def read_upload(session: Any, principal: Principal, text: str) -> Upload:
    upload = Upload()
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        upload.problems.append((1, "csv", _("the file is empty")))
        return upload
    columns = _header_map(rows[0])
    if "serial_number" not in columns:
        upload.problems.append(
            (1, "シリアル番号", _("the header needs a シリアル番号 (serial_number) column"))
        )
        return upload
    if "asset_tag" not in columns and "assigned_user" not in columns:
        upload.problems.append(
            (1, "資産番号", _("the header needs 資産番号 (asset_tag) and/or 使用者 (assigned_user)"))
        )
        return upload
    if len(rows) - 1 > MAX_ROWS:
        upload.problems.append((1, "csv", _("at most %(n)d rows per file", n=MAX_ROWS)))
        return upload
    serials = {
        _cell(row[columns["serial_number"]]) for row in rows[1:] if len(row) > columns["serial_number"]
    }
    serials.discard("")
    by_serial: dict[str, list[Device]] = {}
    if serials:
        found = session.scalars(
            select(Device).where(
                Device.serial_number.in_(sorted(serials)),
                Device.enrollment_state != EnrollmentState.RETIRED,
                device_scope(principal),
            )
        )
        for device in found:
            by_serial.setdefault(device.serial_number, []).append(device)
    seen_serials: dict[str, int] = {}
    tags_in_file: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        serial = _cell(row[columns["serial_number"]]) if len(row) > columns["serial_number"] else ""
        if not serial:
            upload.problems.append((line, "シリアル番号", _("required")))
            continue
        if serial in seen_serials:
            upload.problems.append(
                (line, "シリアル番号", _("also on line %(line)d of the file", line=seen_serials[serial]))
            )
            continue
        seen_serials[serial] = line
        devices = by_serial.get(serial, [])
        if not devices:
            upload.problems.append(
                (line, "シリアル番号", _("no tablet with serial %(serial)s in your units", serial=serial))
            )
            continue
        if len(devices) > 1:
            upload.problems.append(
                (
                    line,
                    "シリアル番号",
                    _("several tablets have serial %(serial)s; set this one on its page", serial=serial),
                )
            )
            continue
        values: dict[str, str | None] = {}
        for column, title in (("asset_tag", "資産番号"), ("assigned_user", "使用者")):
            if column not in columns or len(row) <= columns[column]:
                continue
            raw = _cell(row[columns[column]])
            if raw == "":
                continue  # blank: left as it is
            value, problem = _label_value(raw, column)
            if problem is not None:
                upload.problems.append((line, title, problem))
                continue
            values[column] = value
        tag = values.get("asset_tag")
        if tag is not None:
            key = tag.lower()
            if key in tags_in_file:
                upload.problems.append(
                    (line, "資産番号", _("%(tag)s is also on line %(line)d", tag=tag, line=tags_in_file[key]))
                )
                continue
            tags_in_file[key] = line
            holder = session.scalar(
                select(Device).where(func.lower(Device.asset_tag) == key, Device.id != devices[0].id).limit(1)
            )
            if holder is not None:
                upload.problems.append(
                    (
                        line,
                        "資産番号",
                        _(
                            "%(tag)s is already on tablet %(name)s; clear it there first",
                            tag=tag,
                            name=holder.device_name or holder.serial_number or holder.id,
                        ),
                    )
                )
                continue
        change = Change(line, devices[0], values)
        if change.diff:
            upload.changes.append(change)
        else:
            upload.unchanged += 1
    return upload


def _page(upload: Upload | None = None, csv_text: str = "", status: int = 200) -> tuple[str, int]:
    return (
        render_template(
            "console/bulk_labels.html", upload=upload, csv_text=csv_text, limits=LIMITS, clear=CLEAR
        ),
        status,
    )


@bp.route("/devices/labels/import", methods=["GET"])
@needs(Permission.DEVICE_WRITE)
def bulk_labels_form() -> tuple[str, int]:
    return _page()


@bp.route("/devices/labels/template.csv")
@needs(Permission.DEVICE_WRITE)
def bulk_labels_template() -> Response:
    """The tablets of the user's units with their current labels: the file to fill in."""
    session = db_session()
    devices = session.scalars(
        select(Device)
        .where(device_scope(current_principal()), Device.enrollment_state != EnrollmentState.RETIRED)
        .order_by(Device.serial_number, Device.id)
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TEMPLATE_HEADER)
    for device in devices:
        if not device.serial_number:
            continue
        writer.writerow(
            [
                _safe(device.serial_number),
                _safe(device.device_name),
                _safe(device.asset_tag),
                _safe(device.assigned_user),
            ]
        )
    # With a BOM, so that Excel opens the Japanese columns as UTF-8.
    body = "\ufeff" + out.getvalue()
    return Response(
        body.encode("utf-8"),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="hikeshi-device-labels.csv"'},
    )


def _safe(value: str | None) -> str:
    """A cell a spreadsheet will not run as a formula (a tablet names itself)."""
    text = value or ""
    return "'" + text if text.startswith(_FORMULA_START) else text


@bp.route("/devices/labels/import", methods=["POST"])
@needs(Permission.DEVICE_WRITE)
def bulk_labels_upload() -> Response | tuple[str, int]:
    """First post: the file, checked and shown as a list of changes. Second post (confirmed): the
    same text carried back, checked again, applied in one transaction."""
    principal = current_principal()
    session = db_session()
    upload_file = request.files.get("csv")
    if upload_file is not None and upload_file.filename:
        data = upload_file.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            return _page(Upload(problems=[(0, "csv", _("the file is larger than 1 MB"))]), status=413)
        text = _decode(data)
        if text is None:
            return _page(
                Upload(problems=[(0, "csv", _("save the file as UTF-8 or Shift_JIS CSV"))]), status=400
            )
    else:
        text = request.form.get("csv_text") or ""
        if len(text) > MAX_BYTES:
            abort(413)
    if not text.strip():
        return _page(Upload(problems=[(0, "csv", _("choose a CSV file"))]), status=400)
    upload = read_upload(session, principal, text)
    if upload.problems:
        return _page(upload, status=400)
    if request.form.get("confirmed") != "yes":
        return _page(upload, csv_text=text)
    changed = 0
    try:
        for change in upload.changes:
            if set_device_labels(session, change.device, change.values, actor=principal.actor):
                changed += 1
    except DuplicateAssetTag as exc:
        session.rollback()
        tag = str(exc).split("'")[1] if "'" in str(exc) else ""
        message = _("Not saved: asset tag %(tag)s is already on another tablet.", tag=tag)
        return _page(Upload(problems=[(0, "資産番号", message)]), status=409)
    session.commit()
    flash(
        _("Labels saved for %(n)d tablet(s); %(same)d already matched.", n=changed, same=upload.unchanged),
        "ok",
    )
    return redirect(url_for("console.devices"))  # type: ignore[return-value]
