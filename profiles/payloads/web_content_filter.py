"""Web content filter: the browser may open only the listed sites.

Apple enforces this on supervised devices only; renderings say so in their notes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from profiles.payloads.common import PayloadKind


def _site_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"Not an http(s) URL with a host: {value!r}.")


class AllowedSiteSchema(Schema):
    url = fields.String(required=True, validate=[validate.Length(max=2048), _site_url])
    title = fields.String(validate=validate.Length(min=1, max=128))

    @post_load
    def _titled(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # Apple shows a bookmark per allowed site and requires a title for it.
        return {"url": data["url"], "title": data.get("title") or (urlsplit(data["url"]).hostname or "")}


class WebContentFilterSchema(Schema):
    allowed_urls = fields.List(
        fields.Nested(AllowedSiteSchema), required=True, validate=validate.Length(min=1, max=500)
    )

    @validates_schema
    def _distinct(self, data: dict[str, Any], **kwargs: Any) -> None:
        urls = [site["url"] for site in data["allowed_urls"]]
        if len(set(urls)) != len(urls):
            raise ValidationError({"allowed_urls": ["The same URL is listed twice."]})

    @post_load
    def _plain(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return dict(data)


KIND = PayloadKind(
    name="web_content_filter",
    schema=WebContentFilterSchema,
    title_ja="Webコンテンツフィルタ",
    title_en="Web content filter",
    multiple=False,
)
