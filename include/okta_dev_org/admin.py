"""AdminClient: the HTTP client for the dev org's /_dev/ endpoints (tests and benchmarks use it)."""
from __future__ import annotations

import requests


class AdminError(Exception):
    pass


class AdminClient:
    def __init__(self, org_url: str, ca_bundle: str | None = None, timeout: float = 30.0):
        self.org_url = org_url.rstrip("/")
        self.session = requests.Session()
        # With trust_env, REQUESTS_CA_BUNDLE would override session.verify; the dev org is local anyway.
        self.session.trust_env = False
        self.session.verify = ca_bundle if ca_bundle else True
        self.timeout = timeout

    def _call(self, method: str, path: str, payload=None, params=None):
        response = self.session.request(method, f"{self.org_url}/_dev{path}", json=payload, params=params,
                                        timeout=self.timeout)
        if response.status_code != 200:
            raise AdminError(f"{method} /_dev{path}: {response.status_code} {response.text}")
        return response.json()

    def health(self) -> dict:
        return self._call("GET", "/health")

    def stats(self) -> dict:
        return self._call("GET", "/stats")

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset")

    def users(self, offset: int = 0, limit: int | None = None) -> list[dict]:
        """Every user (DEPROVISIONED too) in id order, each with a `_dev` block: index, messy, messy_fields..."""
        params = {"offset": offset}
        if limit is not None:
            params["limit"] = limit
        return self._call("GET", "/users", params=params)

    def user(self, user_id: str) -> dict:
        return self._call("GET", f"/users/{user_id}")

    def messy(self) -> dict[str, dict]:
        """{user id: {field: clean value}} for the users seeded with messy values."""
        return self._call("GET", "/messy")

    def configure(self, **settings) -> dict:
        """Change at runtime: rate_limit, rate_limit_<bucket>, rate_limits={}, concurrency_limit, fail_rate,
        fail_statuses, reset_rate, slow_body_rate, slow_body_ms, truncate_rate, invalid_json_rate, latency_ms,
        scope ("all"/"api"/"token"), fault_seed, token_outage_seconds, revoke_tokens."""
        return self._call("POST", "/configure", settings)

    def revoke_tokens(self) -> int:
        return self._call("POST", "/tokens/revoke")["revoked"]

    def register_client(self, client_id: str, jwks: list[dict], granted_scopes=None,
                        dpop_required: bool = False, client_secret: str | None = None) -> None:
        """A private_key_jwt client (jwks), or with `client_secret` (and no jwks) a client_secret_basic one."""
        payload = {"client_id": client_id, "jwks": jwks, "dpop_required": dpop_required}
        if client_secret is not None:
            payload["client_secret"] = client_secret
        if granted_scopes is not None:
            payload["granted_scopes"] = list(granted_scopes)
        self._call("POST", "/clients", payload)

    def set_user_flags(self, user_id: str, outside_resource_set: bool = True) -> dict:
        return self._call("POST", f"/users/{user_id}/flags", {"outside_resource_set": outside_resource_set})

    def set_user_status(self, user_id: str, status: str) -> dict:
        return self._call("POST", f"/users/{user_id}/status", {"status": status})

    def add_user(self, profile: dict, status: str = "ACTIVE") -> dict:
        return self._call("POST", "/users", {"profile": profile, "status": status})

    # ---- groups (as an admin, an app import or a group rule changes them; any type) ---------------------------
    def groups(self) -> list[dict]:
        """Every group, with `_embedded.stats` and a `_dev` block (members)."""
        return self._call("GET", "/groups")

    def group(self, group_id: str) -> dict:
        return self._call("GET", f"/groups/{group_id}")

    def create_group(self, name: str, description: str = "", type: str = "OKTA_GROUP", **profile) -> dict:
        return self._call("POST", "/groups", {"profile": {"name": name, "description": description, **profile},
                                              "type": type})

    def delete_group(self, group_id: str) -> None:
        self._call("DELETE", f"/groups/{group_id}")

    def group_members(self, group_id: str) -> list[str]:
        """The member user ids, in id order."""
        return self._call("GET", f"/groups/{group_id}/members")

    def change_members(self, group_id: str, add=(), remove=()) -> dict:
        """Add and remove members (user ids); `lastMembershipUpdated` moves once per actual change."""
        return self._call("POST", f"/groups/{group_id}/members", {"add": list(add), "remove": list(remove)})

    def update_group_profile(self, group_id: str, **profile) -> dict:
        return self._call("POST", f"/groups/{group_id}/profile", {"profile": profile})

    def close(self) -> None:
        self.session.close()
