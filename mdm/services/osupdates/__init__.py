"""OS updates (issue #21 item 4 and Android's system updates): a per-unit update policy inherited
down the org tree (policy.py), each device's target and due moment (targets.py), the declarative
channel for iOS 17+ (declarations.py, declarative.py), the update commands before it
(enforcement.py), Android's systemUpdate (android.py), the compliance rule's source
(compliance_source.py) and who is behind and why (report.py)."""
