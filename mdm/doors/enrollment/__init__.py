"""The enrollment door: the page a QR code opens and the profile it downloads."""
