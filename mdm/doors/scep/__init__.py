"""SCEP (RFC 8894) at /scep: device identities for enrollment, from the built-in CA.

`attributes` registers the SCEP signed-attribute OIDs with asn1crypto, `message` reads and
authenticates a PKIMessage, `certrep` builds the CA's reply, `views` is the thin HTTP handler.
"""
