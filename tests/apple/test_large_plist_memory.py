"""A large command answer is checked for XML safety without copies of itself: the scan works on
the received bytes, so its own memory stays a small fraction of the body (the old scan decoded
the body to a str — up to four bytes a character with Japanese app names — and sliced it)."""

from __future__ import annotations

import plistlib
import tracemalloc

import pytest

from mdm.doors.apple.plist_codec import MalformedPlist, UnsafePlist, _check_xml_is_safe, decode_message


def _answer(count: int) -> bytes:
    apps = [
        {"Identifier": f"jp.example.app{i}", "Name": f"消防業務アプリ {i}", "Version": "1.0"}
        for i in range(count)
    ]
    return plistlib.dumps({"Status": "Acknowledged", "CommandUUID": "X", "InstalledApplicationList": apps})


def test_the_safety_scan_of_a_large_body_holds_no_copy_of_it():
    body = _answer(40_000)
    assert len(body) > 4 * 1024 * 1024
    tracemalloc.start()
    try:
        _check_xml_is_safe(body)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(body) // 4, f"scan peaked at {peak} bytes for a {len(body)}-byte body"
    assert len(decode_message(body, len(body))["InstalledApplicationList"]) == 40_000


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'<?xml version="1.0" encoding="UTF-16"?><plist><dict/></plist>', MalformedPlist),
        ('<?xml version="1.0"?>\n<plist><dict/></plist>'.encode("utf-16"), MalformedPlist),
        (b'<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "b">]><plist><dict/></plist>', UnsafePlist),
        (b"<plist><dict><key>\xff</key><string/></dict></plist>", MalformedPlist),
        (b'\xef\xbb\xbf<!ENTITY x "y"><plist><dict/></plist>', UnsafePlist),
    ],
)
def test_the_byte_scan_refuses_what_the_text_scan_refused(body, error):
    with pytest.raises(error):
        decode_message(body)
