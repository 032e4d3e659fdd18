"""sHype/ACM mandatory access control: the policy model (Simple Type Enforcement and
Chinese Wall types, conflict sets, VM and resource labels), parsed from Xen's policy XML,
and the decisions xend asks of it."""
