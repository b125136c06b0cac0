"""AMAPI mode (issue 22 part 1): Android tablets with Google Mobile Services managed through
Google's Android Management API instead of Hikeshi's own agent.

One enterprise per server (`enterprise`), bound with the service account uploaded in `credential`;
a unit's tablets use AMAPI when its `mode` says so; each such unit has one AMAPI policy
(`policies`, rendered by the same renderer as the agent's) and enrollment tokens whose QR codes
enroll a tablet into that unit (`tokens`). `client_factory` builds the client from what is stored.
Commands, wipe, notifications and inventory are in the sibling modules of amapi-ops.
"""
