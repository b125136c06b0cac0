"""The SCEP signed attributes (RFC 8894 §3.2.1), taught to asn1crypto's CMS parser.

Registering them makes `attribute["values"]` decode to the right types instead of opaque Any
values. The registration only adds names asn1crypto does not define, so it cannot change how
other CMS code in the process reads its own attributes.
"""

from __future__ import annotations

from asn1crypto import cms
from asn1crypto import core as asn1

MESSAGE_TYPE = "scep_message_type"
PKI_STATUS = "scep_pki_status"
FAIL_INFO = "scep_fail_info"
SENDER_NONCE = "scep_sender_nonce"
RECIPIENT_NONCE = "scep_recipient_nonce"
TRANSACTION_ID = "scep_transaction_id"

OIDS = {
    "2.16.840.1.113733.1.9.2": MESSAGE_TYPE,
    "2.16.840.1.113733.1.9.3": PKI_STATUS,
    "2.16.840.1.113733.1.9.4": FAIL_INFO,
    "2.16.840.1.113733.1.9.5": SENDER_NONCE,
    "2.16.840.1.113733.1.9.6": RECIPIENT_NONCE,
    "2.16.840.1.113733.1.9.7": TRANSACTION_ID,
}


class SetOfPrintableString(asn1.SetOf):
    _child_spec = asn1.PrintableString


class SetOfOctetString(asn1.SetOf):
    _child_spec = asn1.OctetString


SPECS: dict[str, type[asn1.SetOf]] = {
    MESSAGE_TYPE: SetOfPrintableString,
    PKI_STATUS: SetOfPrintableString,
    FAIL_INFO: SetOfPrintableString,
    SENDER_NONCE: SetOfOctetString,
    RECIPIENT_NONCE: SetOfOctetString,
    TRANSACTION_ID: SetOfPrintableString,
}


class MessageType:
    CERT_REP = "3"
    RENEWAL_REQ = "17"
    UPDATE_REQ = "18"
    PKCS_REQ = "19"
    CERT_POLL = "20"
    GET_CERT = "21"
    GET_CRL = "22"


class PKIStatus:
    SUCCESS = "0"
    FAILURE = "2"
    PENDING = "3"


class FailInfo:
    BAD_ALG = "0"
    BAD_MESSAGE_CHECK = "1"
    BAD_REQUEST = "2"
    BAD_TIME = "3"
    BAD_CERT_ID = "4"


def register() -> None:
    for oid, name in OIDS.items():
        cms.CMSAttributeType._map.setdefault(oid, name)
        # asn1crypto builds _reverse_map once per class, at its first instance: a class already
        # used (any CMS parsed before this import) never rebuilds it, so extend it in place.
        if cms.CMSAttributeType._reverse_map is not None:
            cms.CMSAttributeType._reverse_map.setdefault(name, oid)
        cms.CMSAttribute._oid_specs.setdefault(name, SPECS[name])


register()
