"""Device identity primitives both device doors share: Mdm-Signature CMS verification, the CAs
trusted for device certificates, and client certificates forwarded by a TLS proxy."""
