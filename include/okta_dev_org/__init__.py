"""The dev org: a local, strict simulator of an Okta org's token endpoint and Users API.

Run it: ``python -m include.okta_dev_org --users 1000 --messy-fraction 0.2`` (``--help`` lists every flag). On
first start it writes a client key pair into the state dir (``.devorg/``, private key 0600, never in git),
``connection.json`` ({org_url, client_id, key_id, private_key_path, scopes, ca_bundle}) and, once listening,
``ready.json`` ({port, pid, org_url}).

From Python (tests, benchmarks)::

    from include.okta_dev_org import DevOrg, DevOrgOptions, DevOrgProcess

    with DevOrg(DevOrgOptions(users=500, messy_fraction=0.2, state_dir=tmp, rate_limit=0)) as org:
        org.url, org.connection          # connection.json as a dict
        org.admin.stats()                # server-side counters, see Stats.snapshot
        org.admin.users()                # every user incl. DEPROVISIONED, with a `_dev` block (messy_fields...)
        org.admin.configure(fail_rate=0.1, latency_ms=20, rate_limit_users_list=50, token_outage_seconds=5)
        org.admin.register_client("0oa...", jwks=[public_jwk], granted_scopes=["okta.users.read"],
                                  dpop_required=True)
        org.admin.set_user_flags(user_id, outside_resource_set=True)   # 403 E0000006 on updates
        org.admin.revoke_tokens()

``DevOrgProcess(options)`` has the same surface (url, port, connection, ca_bundle, admin) but runs the server in a
child process, so benchmarks and multi-process tests do not share a GIL with it. ``DevOrg.app`` exposes the live
state in-process only.

Admin endpoints (unauthenticated, loopback-only, never part of Okta) live under ``/_dev/``: health, stats,
stats/reset, users, users/{id}, users/{id}/flags, users/{id}/status, messy, configure, tokens/revoke, clients.
"""
from .admin import AdminClient, AdminError
from .options import BUCKETS, DevOrgOptions
from .runner import DevOrg, DevOrgProcess

__all__ = ["AdminClient", "AdminError", "BUCKETS", "DevOrg", "DevOrgOptions", "DevOrgProcess"]
