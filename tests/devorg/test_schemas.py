"""The dev org's User, Group and Error bodies validate against Okta's published OpenAPI schemas."""
from __future__ import annotations

import re

import pytest
from conftest import OrgClient

jsonschema = pytest.importorskip("jsonschema")
yaml = pytest.importorskip("yaml")

DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def openapi_to_json_schema(node):
    """OpenAPI 3.0 `nullable: true` becomes a JSON Schema null alternative; everything else passes through."""
    if isinstance(node, list):
        return [openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: openapi_to_json_schema(value) for key, value in node.items() if key != "discriminator"}
    if converted.pop("nullable", False):
        converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


@pytest.fixture(scope="module")
def validators(okta_reference):
    path = okta_reference / "openapi" / "management-minimal.yaml"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path) as handle:
        document = yaml.load(handle, Loader=loader)
    components = {"components": {"schemas": openapi_to_json_schema(document["components"]["schemas"])}}

    def validator(name):
        schema = {"$ref": f"#/components/schemas/{name}", **components}
        return jsonschema.Draft202012Validator(schema)

    return {"User": validator("User"), "Error": validator("Error"), "Group": validator("Group")}


def check(validator, instance) -> None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def test_listed_and_single_users_validate(devorg, api, validators):
    listed = api.get(f"{devorg.url}/api/v1/users?limit=200").json()
    for user in listed:
        check(validators["User"], user)
        for name in ("created", "lastUpdated"):
            assert DATE_TIME.match(user[name])
    statuses = {u["status"] for u in devorg.admin.users()}
    assert len(statuses) >= 6  # the seed exercises the status enum
    for user in devorg.admin.users()[:40]:
        single = api.get(f"{devorg.url}/api/v1/users/{user['id']}").json()
        check(validators["User"], single)


def test_updated_user_validates(fresh_org, validators):
    org = fresh_org()
    api = OrgClient(org).api()
    user = org.admin.users()[0]
    updated = api.post(f"{org.url}/api/v1/users/{user['id']}", json={"profile": {"nickName": "JD"}})
    check(validators["User"], updated.json())


def test_error_bodies_validate(fresh_org, validators):
    org = fresh_org(rate_limit=0, rate_limits={"user_read": 1})
    api = OrgClient(org).api()
    user = org.admin.users()[0]
    bodies = [
        api.get(f"{org.url}/api/v1/users/00uMissing0000000000").json(),  # 404 E0000007 (and uses up user_read)
        api.get(f"{org.url}/api/v1/users/{user['id']}").json(),  # 429 E0000047
        api.post(f"{org.url}/api/v1/users/{user['id']}", json={"profile": {"firstName": "x" * 60}}).json(),
        api.post(f"{org.url}/api/v1/users/{user['id']}", json=[]).json(),
        api.get(f"{org.url}/api/v1/users", params={"filter": "nonsense"}).json(),
        api.get(f"{org.url}/api/v1/users", headers={"Authorization": "Bearer nope"}).json(),
    ]
    assert [b["errorCode"] for b in bodies] == ["E0000007", "E0000047", "E0000001", "E0000003", "E0000031",
                                                "E0000011"]
    for body in bodies:
        check(validators["Error"], body)
        assert list(body) == ["errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"]


def test_listed_groups_with_stats_members_and_user_groups_validate(fresh_org, validators):
    org = fresh_org(users=80, groups=20)
    api = OrgClient(org).api("okta.groups.read okta.users.read")
    groups = api.get(f"{org.url}/api/v1/groups?expand=stats").json()
    assert {g["type"] for g in groups} == {"OKTA_GROUP", "APP_GROUP", "BUILT_IN"}
    for group in groups:
        check(validators["Group"], group)
        for name in ("created", "lastUpdated", "lastMembershipUpdated"):
            assert DATE_TIME.match(group[name])
        for member in api.get(f"{org.url}/api/v1/groups/{group['id']}/users?limit=200").json():
            check(validators["User"], member)
    user = org.admin.users()[0]["id"]
    for group in api.get(f"{org.url}/api/v1/users/{user}/groups").json():
        check(validators["Group"], group)
    missing = api.get(f"{org.url}/api/v1/groups/00gMissing0000000000/users").json()
    check(validators["Error"], missing)
