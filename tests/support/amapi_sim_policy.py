"""What Google's server refuses in a Policy beyond the discovery document's types (policies.patch
answers 400 INVALID_ARGUMENT), from the Android Management API's published rules:

- applications: one entry per packageName.
- openNetworkConfiguration (the subset of Open Network Configuration AMAPI supports, per
  developers.google.com/android/management/configure-networks): top-level Type omitted or
  "UnencryptedConfiguration"; each NetworkConfiguration has GUID (unique), Name, Type "WiFi" and
  WiFi; WiFi has SSID or HexSSID and a supported Security; EAP has a supported Outer, a
  ClientCertType of Ref (ClientCertRef naming a Certificates entry of Type Client) or
  KeyPairAlias (with ClientCertKeyPairAlias), ServerCARefs naming Certificates of Type
  Authority/Server; ClientCertPattern, SaveCredentials and UseSystemCAs are not supported;
  Certificates have a unique GUID, Type Client (PKCS12) / Authority or Server (X509), and no
  Remove or TrustBits.

What the device itself rejects (DomainSuffixMatch missing, a PKCS#12 it cannot read, a key
pair alias it does not hold) is non-compliance, reported by tests/support/amapi_sim_device.py.
"""

from __future__ import annotations

from typing import Any

SECURITY = {"None", "WEP-PSK", "WPA-PSK", "WPA-EAP", "WEP-8021X", "WPA3-Enterprise_192"}
OUTER = {"EAP-AKA", "EAP-TLS", "EAP-TTLS", "EAP-SIM", "PEAP"}
_UNSUPPORTED_EAP = ("ClientCertPattern", "SaveCredentials", "UseSystemCAs")


def policy_problems(policy: dict[str, Any]) -> list[str]:
    problems = _application_problems(policy)
    onc = policy.get("openNetworkConfiguration")
    if onc is not None:
        problems += onc_problems(onc)
    return problems


def _application_problems(policy: dict[str, Any]) -> list[str]:
    seen: set[str] = set()
    problems = []
    for index, app in enumerate(policy.get("applications") or []):
        package = app.get("packageName") if isinstance(app, dict) else None
        if not package:
            problems.append(f"applications[{index}]: packageName is required")
        elif package in seen:
            problems.append(f"applications[{index}]: duplicate packageName {package!r}")
        else:
            seen.add(package)
    return problems


def onc_problems(onc: Any) -> list[str]:
    where = "openNetworkConfiguration"
    if not isinstance(onc, dict):
        return [f"{where}: must be an object"]
    problems = []
    if onc.get("Type", "UnencryptedConfiguration") != "UnencryptedConfiguration":
        problems.append(f"{where}.Type: only UnencryptedConfiguration is supported")
    certificates, cert_problems = _certificates(onc.get("Certificates") or [], where)
    problems += cert_problems
    guids: set[str] = set()
    for index, network in enumerate(onc.get("NetworkConfigurations") or []):
        at = f"{where}.NetworkConfigurations[{index}]"
        if not isinstance(network, dict):
            problems.append(f"{at}: must be an object")
            continue
        for required in ("GUID", "Name", "Type", "WiFi"):
            if not network.get(required):
                problems.append(f"{at}: {required} is required")
        guid = network.get("GUID")
        if guid in guids:
            problems.append(f"{at}.GUID: {guid!r} is used twice")
        guids.add(str(guid))
        if network.get("Type") not in (None, "WiFi"):
            problems.append(f"{at}.Type: only WiFi networks are supported")
        wifi = network.get("WiFi")
        if isinstance(wifi, dict):
            problems += _wifi(wifi, f"{at}.WiFi", certificates)
    return problems


def _certificates(entries: Any, where: str) -> tuple[dict[str, str], list[str]]:
    certificates: dict[str, str] = {}
    problems = []
    for index, cert in enumerate(entries if isinstance(entries, list) else []):
        at = f"{where}.Certificates[{index}]"
        if not isinstance(cert, dict) or not cert.get("GUID"):
            problems.append(f"{at}: GUID is required")
            continue
        if cert["GUID"] in certificates:
            problems.append(f"{at}.GUID: {cert['GUID']!r} is used twice")
        kind = cert.get("Type")
        if kind == "Client" and not cert.get("PKCS12"):
            problems.append(f"{at}: a Client certificate needs PKCS12")
        elif kind in ("Authority", "Server") and not cert.get("X509"):
            problems.append(f"{at}: an {kind} certificate needs X509")
        elif kind not in ("Client", "Authority", "Server"):
            problems.append(f"{at}.Type: {kind!r} is not Client, Server or Authority")
        for unsupported in ("Remove", "TrustBits"):
            if unsupported in cert:
                problems.append(f"{at}.{unsupported} is not supported")
        certificates[str(cert["GUID"])] = str(kind)
    return certificates, problems


def _wifi(wifi: dict[str, Any], at: str, certificates: dict[str, str]) -> list[str]:
    problems = []
    if not wifi.get("SSID") and not wifi.get("HexSSID"):
        problems.append(f"{at}: SSID or HexSSID is required")
    if wifi.get("Security") not in SECURITY:
        problems.append(f"{at}.Security: {wifi.get('Security')!r} is not one of {sorted(SECURITY)}")
    eap = wifi.get("EAP")
    if not isinstance(eap, dict):
        if wifi.get("Security") in ("WPA-EAP", "WEP-8021X", "WPA3-Enterprise_192"):
            problems.append(f"{at}: an enterprise network needs EAP")
        return problems
    at = f"{at}.EAP"
    if eap.get("Outer") not in OUTER:
        problems.append(f"{at}.Outer: {eap.get('Outer')!r} is not one of {sorted(OUTER)}")
    for unsupported in _UNSUPPORTED_EAP:
        if unsupported in eap:
            problems.append(f"{at}.{unsupported} is not supported")
    kind = eap.get("ClientCertType")
    if kind == "Ref":
        ref = eap.get("ClientCertRef")
        if certificates.get(str(ref)) != "Client":
            problems.append(f"{at}.ClientCertRef: {ref!r} names no Certificates entry of Type Client")
    elif kind == "KeyPairAlias":
        if not eap.get("ClientCertKeyPairAlias"):
            problems.append(f"{at}: ClientCertType KeyPairAlias needs ClientCertKeyPairAlias")
    elif kind not in (None, "None"):
        problems.append(f"{at}.ClientCertType: {kind!r} is not supported (Ref or KeyPairAlias)")
    if eap.get("Outer") == "EAP-TLS" and kind not in ("Ref", "KeyPairAlias"):
        problems.append(f"{at}: EAP-TLS needs a client certificate (ClientCertType Ref or KeyPairAlias)")
    for index, ref in enumerate(eap.get("ServerCARefs") or []):
        if certificates.get(str(ref)) not in ("Authority", "Server"):
            problems.append(f"{at}.ServerCARefs[{index}]: {ref!r} names no Authority certificate")
    return problems
