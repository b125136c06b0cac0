"""Built-in profile templates an HQ starts from; each is a validated spec.

`template_spec(slug, identifier=...)` gives a copy under the HQ's own identifier, ready for
profiles.service.create_profile. Placeholders an HQ must replace (SSIDs, RADIUS server names, the
apps on the allow list) are said so in the description.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from profiles.spec import validate_spec


@dataclass(frozen=True)
class Template:
    slug: str
    spec: dict[str, Any]

    @property
    def name_ja(self) -> str:
        return str(self.spec["name_ja"])

    @property
    def name_en(self) -> str:
        return str(self.spec["name_en"])


def _station_wifi(ssid: str, key: str) -> dict[str, Any]:
    # 図表42/43 of the guideline: WPA2/WPA3-Enterprise, 802.1X, EAP-TLS device certificates.
    return {
        "kind": "wifi",
        "key": key,
        "settings": {
            "ssid": ssid,
            "auto_join": True,
            "security": "wpa2_enterprise",
            "eap_type": "EAP-TLS",
            "certificate_source": "enrollment_identity",
            "trusted_server_names": ["radius.fd.example.jp"],
            "trust_builtin_ca": True,
        },
    }


_FIELD_STANDARD = {
    "identifier": "jp.hikeshi.template.field-standard",
    "name_ja": "現場タブレット標準",
    "name_en": "Field tablet baseline",
    "description": (
        "現場活動用タブレットの基本設定。6桁以上のパスコード、5分で自動ロック、"
        "App Store と AirDrop は使用不可、カメラは使用可。"
    ),
    "payloads": [
        {
            "kind": "passcode",
            "settings": {"min_length": 6, "auto_lock_minutes": 5, "max_failed_attempts": 10},
        },
        {
            "kind": "restrictions",
            "settings": {
                "allow_camera": True,
                "allow_app_store": False,
                "allow_airdrop": False,
                "allow_erase_content_and_settings": False,
            },
        },
    ],
}

_STRICT = {
    "identifier": "jp.hikeshi.template.strict",
    "name_ja": "厳格",
    "name_en": "Strict",
    "description": (
        "許可リストのアプリだけを使用可能にし、カメラ・スクリーンショット・App Store を禁止する。"
        "許可リストには各本部の業務アプリ（搬送支援など）を追加すること。"
    ),
    "payloads": [
        {
            "kind": "passcode",
            "settings": {
                "min_length": 8,
                "require_alphanumeric": True,
                "auto_lock_minutes": 2,
                "max_failed_attempts": 6,
            },
        },
        {
            "kind": "restrictions",
            "settings": {
                "allow_camera": False,
                "allow_screenshots": False,
                "allow_app_store": False,
                "allow_in_app_purchases": False,
                "allow_airdrop": False,
                "allow_account_modification": False,
                "allow_erase_content_and_settings": False,
                "usb_data_access": "no_file_transfer",
                "app_allow_list": [
                    {
                        "name": "マップ",
                        "bundle_id": "com.apple.Maps",
                        "package_name": "com.google.android.apps.maps",
                    },
                ],
            },
        },
    ],
}

_STATION_WIFI = {
    "identifier": "jp.hikeshi.template.station-wifi",
    "name_ja": "署内Wi-Fi",
    "name_en": "Station Wi-Fi",
    "description": (
        "署所の無線LAN。WPA2/WPA3エンタープライズ（IEEE 802.1X）、端末証明書による EAP-TLS 認証"
        "（ID・パスワードは使わない）。SSID と RADIUS サーバ証明書名を自本部の値に置き換えること。"
    ),
    "payloads": [_station_wifi("HIKESHI-STATION", "station-wifi")],
}

_MYNA_KYUKYU = {
    "identifier": "jp.hikeshi.template.myna-kyukyu",
    "name_ja": "マイナ救急",
    "name_en": "My Number card ambulance tablet",
    "description": (
        "マイナ救急（救急隊によるマイナンバーカードでの受診歴・薬剤情報の閲覧）用タブレット。"
        "端末利用者の識別・認証（パスコード）、USB 等外部記録媒体へのファイル転送の禁止、"
        "カード読み取り用にカメラは使用可。無線LANは EAP-TLS。"
        "無線LANのクライアント分離（端末間通信の禁止）はプロファイルでは設定できないため、"
        "アクセスポイント側で必ず設定すること。 / Wi-Fi client isolation (no device-to-device "
        "traffic) cannot be set by a profile: configure it on the access points."
    ),
    "payloads": [
        {
            "kind": "passcode",
            "settings": {
                "min_length": 6,
                "auto_lock_minutes": 2,
                "max_failed_attempts": 10,
                "history": 5,
            },
        },
        {
            "kind": "restrictions",
            "settings": {
                "allow_camera": True,
                "allow_app_store": False,
                "allow_airdrop": False,
                "allow_account_modification": False,
                "allow_erase_content_and_settings": False,
                # Card readers and other accessories keep working; storage and file transfer do not.
                "usb_data_access": "no_file_transfer",
            },
        },
        _station_wifi("HIKESHI-AMBULANCE", "ambulance-wifi"),
    ],
}

TEMPLATES: dict[str, Template] = {
    slug: Template(slug, validate_spec(spec))
    for slug, spec in (
        ("field-standard", _FIELD_STANDARD),
        ("strict", _STRICT),
        ("station-wifi", _STATION_WIFI),
        ("myna-kyukyu", _MYNA_KYUKYU),
    )
}


def list_templates() -> list[Template]:
    return list(TEMPLATES.values())


def template_spec(
    slug: str,
    *,
    identifier: str | None = None,
    name_ja: str | None = None,
    name_en: str | None = None,
) -> dict[str, Any]:
    """A validated copy of template `slug`, optionally under another identifier and names.

    KeyError for an unknown slug; marshmallow ValidationError for a bad identifier or name."""
    spec = copy.deepcopy(TEMPLATES[slug].spec)
    for field_name, value in (("identifier", identifier), ("name_ja", name_ja), ("name_en", name_en)):
        if value is not None:
            spec[field_name] = value
    return validate_spec(spec)
