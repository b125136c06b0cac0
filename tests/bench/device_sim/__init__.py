"""Hikeshi's own device simulator for the device-channel benchmark (issue 18).

- `postgres`: a private PostgreSQL 15 cluster with pg_stat_statements, for counting statements.
- `fleet`: enrolls N iPads with 2048-bit RSA keys: a few over the real enrollment door (profile
  download, SCEP PKIOperation), the rest through the issuance service the SCEP door calls
  (`enrollment.issuance.issue_with_challenge`), then every one sends Authenticate and TokenUpdate
  over HTTP, as a device does after SCEP.
- `cycles`: one device's request cycles (Idle → empty; Idle → command, Acknowledged → empty), each
  body signed with the device's identity (tests.support.apple_device.SimulatedIPad). The client is
  duck-typed, so the small in-suite check drives the same code through Flask's test client.
- `load`: the multi-process runner (spawned processes, threads in each, one keep-alive HTTP
  connection per thread) and what it measured.
- `measure`: CPU time of a process tree from /proc, percentiles, the printed report.
"""
