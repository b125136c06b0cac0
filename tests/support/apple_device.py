"""A simulated iPad that speaks the Apple MDM check-in and command protocol, for integration tests.

It sends the bodies a supervised iPad sends (shapes from Apple's device-management schema,
mdm/checkin/*.yaml, and the documented command-response keys), as XML plists with the standard
DOCTYPE, and signs each one the way a device with SignMessage does: a detached CMS SignedData with
SHA-256 over the raw body, base64 in the `Mdm-Signature` header.

    ipad = SimulatedIPad(cert, key)
    response = ipad.checkin(client, ipad.authenticate_body())
    response = ipad.connect(client, ipad.idle_body())

`client` is duck-typed: a Flask test client, an httpx client, or anything with `put(path, ...)`.
"""

from __future__ import annotations

import base64
import inspect
import plistlib
import secrets
import uuid
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

CHECKIN_PATH = "/mdm/checkin"
CONNECT_PATH = "/mdm/connect"
CHECKIN_CONTENT_TYPE = "application/x-apple-aspen-mdm-checkin"
CONNECT_CONTENT_TYPE = "application/x-apple-aspen-mdm"
USER_AGENT = "MDM/1.0"

RESULT_STATUSES = frozenset({"Acknowledged", "Error", "CommandFormatError", "NotNow", "Idle"})

# Characters of Apple's randomized 10-character serial numbers (no vowels, so no words).
_SERIAL_ALPHABET = "BCDFGHJKLMNPQRSTVWXYZ0123456789"

IdentityKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def error_chain(
    code: int = 12021,
    domain: str = "MCMDMErrorDomain",
    description: str = "The command could not be completed.",
) -> list[dict[str, Any]]:
    """An ErrorChain as devices report it with Status Error (one entry; pass several to nest)."""
    return [
        {
            "ErrorCode": code,
            "ErrorDomain": domain,
            "LocalizedDescription": description,
            "USEnglishDescription": description,
        }
    ]


class SimulatedIPad:
    """One enrolled iPad: its identity, its push token, and the messages it sends."""

    def __init__(
        self,
        identity_cert: x509.Certificate,
        identity_key: IdentityKey,
        *,
        udid: str | None = None,
        serial: str | None = None,
        topic: str | None = None,
        os_version: str = "17.5.1",
        build_version: str = "21F90",
        product_name: str = "iPad13,18",
        model_name: str = "iPad",
        model: str = "MPQ03J/A",
        device_name: str | None = None,
        imei: str | None = None,
        meid: str | None = None,
        supervised: bool = True,
    ) -> None:
        self.identity_cert = identity_cert
        self.identity_key = identity_key
        # Devices since the A12 chip use "<8 hex chip id>-<16 hex>"; 8101 is the A14 of iPad13,18.
        self._udid = udid or f"00008101-{secrets.token_hex(8).upper()}"
        self.serial = serial or "".join(secrets.choice(_SERIAL_ALPHABET) for _ in range(10))
        self.topic = topic or f"com.apple.mgmt.External.{uuid.uuid4()}"
        self.os_version = os_version
        self.build_version = build_version
        self.product_name = product_name
        self.model_name = model_name
        self.model = model
        self.device_name = device_name or f"iPad ({self.serial[-4:]})"
        self.imei = imei
        self.meid = meid
        self.supervised = supervised
        self.token = secrets.token_bytes(32)
        self._push_magic = str(uuid.uuid4()).upper()
        self.unlock_token = secrets.token_bytes(48)

    @property
    def udid(self) -> str:
        return self._udid

    @property
    def token_hex(self) -> str:
        """The push token as APNs addresses it: lowercase hex."""
        return self.token.hex()

    @property
    def push_magic(self) -> str:
        return self._push_magic

    def rotate_push_token(self) -> None:
        """A new push token and PushMagic, as after a restore; send token_update_body() next."""
        self.token = secrets.token_bytes(32)
        self._push_magic = str(uuid.uuid4()).upper()

    def take_identity(self, cert: x509.Certificate, key: IdentityKey) -> None:
        """The identity the SCEP payload of an enrollment profile gave this device."""
        self.identity_cert = cert
        self.identity_key = key

    # -- Automated Device Enrollment -------------------------------------------------------------

    def machine_info(self, language: str = "ja-JP") -> dict[str, Any]:
        """What Setup Assistant sends to an ADE profile's url (Apple's MachineInfo keys)."""
        info: dict[str, Any] = {
            "UDID": self.udid,
            "SERIAL": self.serial,
            "PRODUCT": self.product_name,
            "VERSION": self.build_version,
            "LANGUAGE": language,
        }
        if self.imei:
            info["IMEI"] = self.imei
        if self.meid:
            info["MEID"] = self.meid
        return info

    def machine_info_body(
        self,
        device_cert: x509.Certificate,
        device_key: rsa.RSAPrivateKey,
        chain: list[x509.Certificate] | None = None,
        info: dict[str, Any] | None = None,
    ) -> bytes:
        """The machine info as the device POSTs it: a CMS SignedData carrying the plist, signed
        with the device certificate Apple's device CA issued, that CA's certificates attached."""
        builder = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(_plist(info if info is not None else self.machine_info()))
            .add_signer(device_cert, device_key, hashes.SHA256())
        )
        for cert in chain or []:
            builder = builder.add_certificate(cert)
        return builder.sign(Encoding.DER, [pkcs7.PKCS7Options.Binary])

    def post_machine_info(self, client: Any, body: bytes, path: str = "/ade/enroll") -> Any:
        return client.post(path, data=body, headers={"Content-Type": "application/pkcs7-signature"})

    # -- check-in messages (PUT /mdm/checkin) ---------------------------------------------------

    def authenticate_body(self) -> bytes:
        message: dict[str, Any] = {
            "MessageType": "Authenticate",
            "UDID": self.udid,
            "Topic": self.topic,
            "SerialNumber": self.serial,
            "BuildVersion": self.build_version,
            "OSVersion": self.os_version,
            "ProductName": self.product_name,
            "DeviceName": self.device_name,
            "Model": self.model,
            "ModelName": self.model_name,
        }
        if self.imei is not None:
            message["IMEI"] = self.imei
        if self.meid is not None:
            message["MEID"] = self.meid
        return _plist(message)

    def token_update_body(self, *, awaiting_configuration: bool = False) -> bytes:
        return _plist(
            {
                "MessageType": "TokenUpdate",
                "UDID": self.udid,
                "Topic": self.topic,
                "Token": self.token,
                "PushMagic": self.push_magic,
                "UnlockToken": self.unlock_token,
                "AwaitingConfiguration": awaiting_configuration,
            }
        )

    def checkout_body(self) -> bytes:
        return _plist({"MessageType": "CheckOut", "UDID": self.udid, "Topic": self.topic})

    # -- command channel (PUT /mdm/connect) -----------------------------------------------------

    def idle_body(self) -> bytes:
        return _plist({"Status": "Idle", "UDID": self.udid})

    def result_body(self, command_uuid: str, status: str = "Acknowledged", **extra: Any) -> bytes:
        """A command result. Status Error gets a default ErrorChain unless one is given."""
        if status not in RESULT_STATUSES:
            raise ValueError(f"unknown command status {status!r}")
        message: dict[str, Any] = {"UDID": self.udid, "CommandUUID": command_uuid, "Status": status}
        if status == "Error" and "ErrorChain" not in extra:
            message["ErrorChain"] = error_chain()
        message.update(extra)
        return _plist(message)

    def device_information(self) -> dict[str, Any]:
        """QueryResponses for a DeviceInformation command, for `result_body(uuid, QueryResponses=...)`."""
        answers: dict[str, Any] = {
            "UDID": self.udid,
            "DeviceName": self.device_name,
            "OSVersion": self.os_version,
            "BuildVersion": self.build_version,
            "ModelName": self.model_name,
            "Model": self.model,
            "ProductName": self.product_name,
            "SerialNumber": self.serial,
            "IsSupervised": self.supervised,
        }
        if self.imei is not None:
            answers["IMEI"] = self.imei
        if self.meid is not None:
            answers["MEID"] = self.meid
        return answers

    # -- authentication -------------------------------------------------------------------------

    def sign(self, body: bytes) -> dict[str, str]:
        """The Mdm-Signature header for `body`: detached CMS, SHA-256, signed attributes included."""
        der = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(body)
            .add_signer(self.identity_cert, self.identity_key, hashes.SHA256())
            .sign(
                Encoding.DER,
                [
                    pkcs7.PKCS7Options.DetachedSignature,
                    pkcs7.PKCS7Options.NoCapabilities,
                    # Binary: sign the body as is; without it the builder would sign a CRLF copy.
                    pkcs7.PKCS7Options.Binary,
                ],
            )
        )
        return {"Mdm-Signature": base64.b64encode(der).decode("ascii")}

    def proxy_certificate_headers(self, header_name: str = "X-SSL-Client-Cert") -> dict[str, str]:
        """The header a TLS-terminating nginx adds for this device ($ssl_client_escaped_cert)."""
        pem = self.identity_cert.public_bytes(Encoding.PEM).decode("ascii")
        return {header_name: quote(pem, safe="")}

    # -- transport ------------------------------------------------------------------------------

    def checkin(
        self,
        client: Any,
        body: bytes,
        *,
        path: str = CHECKIN_PATH,
        signed: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """PUT a check-in message; `signed=False` or `headers` let tests send forged requests."""
        return self._put(client, path, body, CHECKIN_CONTENT_TYPE, signed, headers)

    def connect(
        self,
        client: Any,
        body: bytes,
        *,
        path: str = CONNECT_PATH,
        signed: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """PUT a command-channel message (Idle or a result); returns the client's response."""
        return self._put(client, path, body, CONNECT_CONTENT_TYPE, signed, headers)

    def _put(
        self,
        client: Any,
        path: str,
        body: bytes,
        content_type: str,
        signed: bool,
        headers: dict[str, str] | None,
    ) -> Any:
        all_headers = {"Content-Type": content_type, "User-Agent": USER_AGENT}
        if signed:
            all_headers.update(self.sign(body))
        all_headers.update(headers or {})
        # httpx takes raw bytes as `content=`; Flask's test client and requests take `data=`.
        if _accepts_keyword(client.put, "content"):
            return client.put(path, content=body, headers=all_headers)
        return client.put(path, data=body, headers=all_headers)


def _accepts_keyword(function: Any, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _plist(message: dict[str, Any]) -> bytes:
    # plistlib writes the XML declaration and Apple's DOCTYPE, as devices do.
    return plistlib.dumps(message, fmt=plistlib.FMT_XML, sort_keys=True)
