"""The least-privilege IAM policies of deploy/iam/ grant exactly the S3 actions the code uses, per site.

The source of vault_pipeline/ is read with `ast` (the embedded dev stack aside: it creates its own buckets and
never runs in production). Every S3 request it can make is found: boto3 client calls (`client.head_object(...)`,
`get_paginator("list_objects_v2")`, `generate_presigned_url("get_object")`) and the awscrt fast path
(replication/crt_s3.py), whose raw requests must stay inside the boto3-named methods it overrides, so that
their callers, scanned like any boto3 call, account for them. Each call is attributed to a site by the function
it is in (SITE_OF below, written from reading the call sites), mapped to IAM actions by OPERATION_ACTIONS, and
the union per site must equal the actions of that site's policy file: an S3 call added without a policy update
fails, and so does an action in a policy that no code uses.

IAM facts the mapping rests on (AWS Service Authorization Reference, "Actions, resources, and condition keys for
Amazon S3", and each operation's "Permissions" section in the S3 API reference):
* HeadObject needs s3:GetObject; with a versionId (HEAD or GET) s3:GetObjectVersion.
* HeadBucket and ListObjectsV2 need s3:ListBucket; ListObjectVersions s3:ListBucketVersions;
  ListMultipartUploads s3:ListBucketMultipartUploads (bucket ARN); ListParts s3:ListMultipartUploadParts.
* CreateMultipartUpload, UploadPart and CompleteMultipartUpload need s3:PutObject; AbortMultipartUpload its own.
* A PutObject / CreateMultipartUpload carrying x-amz-tagging also needs s3:PutObjectTagging; carrying
  x-amz-object-lock-mode / -retain-until-date, s3:PutObjectRetention; a legal hold, s3:PutObjectLegalHold.
* A HEAD/GET answer carries x-amz-object-lock-mode / -retain-until-date only with s3:GetObjectRetention,
  the legal hold only with s3:GetObjectLegalHold, and x-amz-tagging-count only with the permission to read
  the object's tags (s3:GetObjectTagging; s3:GetObjectVersionTagging for a version).
* GetObjectTagging of a version needs s3:GetObjectVersionTagging too; DeleteObject of a version
  s3:DeleteObjectVersion; GetBucketVersioning s3:GetBucketVersioning; GetObjectLockConfiguration
  s3:GetBucketObjectLockConfiguration; RestoreObject s3:RestoreObject (with or without versionId).
"""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from vault_pipeline.replication.inventory import PROBE_PREFIX

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "vault_pipeline"
IAM = REPO / "deploy" / "iam"
NOT_PRODUCTION = ("devstack",)  # the embedded stack (make run, the tests): creates its buckets, never deployed

HOT, COLD, HOT_DELETION, HOT_SFTP = "hot", "cold", "hot-deletion", "hot-sftp-intake"
FORWARD = "forward"  # passes its caller's request on unchanged (crt_s3's fallbacks to boto3): the caller counts
POLICY_FILES = {HOT: "hot-site-policy.json", COLD: "cold-site-policy.json",
                HOT_DELETION: "hot-site-deletion-policy.json", HOT_SFTP: "hot-site-sftp-intake-policy.json"}
BUCKET_PLACEHOLDER = {HOT: "HOT_BUCKET", COLD: "COLD_BUCKET", HOT_DELETION: "HOT_BUCKET", HOT_SFTP: "HOT_BUCKET"}

# boto3 operation (or the fast path's own method) -> (actions, more actions when the call names a VersionId).
# An S3 call whose operation is missing here fails the test: look the operation up in AWS's reference above
# and add it.
OPERATION_ACTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    name: (frozenset(actions), frozenset(versioned))
    for name, actions, versioned in [
        ("head_object", {"s3:GetObject"}, {"s3:GetObjectVersion"}),
        ("get_object", {"s3:GetObject"}, {"s3:GetObjectVersion"}),
        ("get_object_attributes", {"s3:GetObject", "s3:GetObjectAttributes"},
         {"s3:GetObjectVersion", "s3:GetObjectVersionAttributes"}),
        ("get_object_tagging", {"s3:GetObjectTagging"}, {"s3:GetObjectVersionTagging"}),
        ("get_object_retention", {"s3:GetObjectRetention"}, set()),
        ("get_object_legal_hold", {"s3:GetObjectLegalHold"}, set()),
        ("put_object", {"s3:PutObject"}, set()),
        ("create_multipart_upload", {"s3:PutObject"}, set()),
        ("upload_part", {"s3:PutObject"}, set()),
        ("upload_part_streamed", {"s3:PutObject"}, set()),  # crt_s3: UploadPart with a streamed body
        ("complete_multipart_upload", {"s3:PutObject"}, set()),
        ("abort_multipart_upload", {"s3:AbortMultipartUpload"}, set()),
        ("list_multipart_uploads", {"s3:ListBucketMultipartUploads"}, set()),
        ("list_parts", {"s3:ListMultipartUploadParts"}, set()),
        ("list_objects_v2", {"s3:ListBucket"}, set()),
        ("list_objects", {"s3:ListBucket"}, set()),
        ("head_bucket", {"s3:ListBucket"}, set()),
        ("list_object_versions", {"s3:ListBucketVersions"}, set()),
        ("get_bucket_versioning", {"s3:GetBucketVersioning"}, set()),
        ("get_bucket_location", {"s3:GetBucketLocation"}, set()),
        ("get_object_lock_configuration", {"s3:GetBucketObjectLockConfiguration"}, set()),
        ("put_object_retention", {"s3:PutObjectRetention"}, set()),
        ("put_object_tagging", {"s3:PutObjectTagging"}, {"s3:PutObjectVersionTagging"}),
        ("delete_object", {"s3:DeleteObject"}, {"s3:DeleteObjectVersion"}),
        ("restore_object", {"s3:RestoreObject"}, set()),
        ("copy_object", {"s3:GetObject", "s3:PutObject"}, {"s3:GetObjectVersion"}),
        # boto3's managed transfer (s3transfer): PutObject, or Create/UploadPart/Complete, aborted on failure.
        ("upload_file", {"s3:PutObject", "s3:AbortMultipartUpload"}, set()),
    ]
}
# Request parameters that need an action of their own (on PutObject / CreateMultipartUpload).
PARAMETER_ACTIONS = {
    "Tagging": "s3:PutObjectTagging",
    "ObjectLockMode": "s3:PutObjectRetention",
    "ObjectLockRetainUntilDate": "s3:PutObjectRetention",
    "ObjectLockLegalHoldStatus": "s3:PutObjectLegalHold",
}
# Answer fields S3 only returns with an action of their own (HeadObject / GetObject).
ANSWER_ACTIONS = {
    "ObjectLockMode": {"s3:GetObjectRetention"},
    "ObjectLockRetainUntilDate": {"s3:GetObjectRetention"},
    "ObjectLockLegalHoldStatus": {"s3:GetObjectLegalHold"},
    "TagCount": {"s3:GetObjectTagging"},  # + s3:GetObjectVersionTagging where the site HEADs versions
}
BUCKET_LEVEL = {"s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads", "s3:GetBucketVersioning",
                "s3:GetBucketLocation", "s3:GetBucketObjectLockConfiguration"}

# Which site each function's S3 calls (or request parameters, or answer reads) touch, from reading the call
# sites: hot = the hot site's client (S3SiteResource `hot_site`: the sensor's listing, the feeds' HEADs, the
# copy's reads, the audit's hot HEAD); cold = ColdSiteResource `cold_site` (copies, verification, the journal
# and its seals, reports, restores and drills, the secondary's rebuild); hot-deletion = the hot site, only
# with DELETE_FROM_OVH_AFTER_REPLICATION=true.
SITE_OF: dict[tuple[str, str], frozenset[str]] = {key: frozenset(sites) for key, sites in {
    ("intake/ingest.py", "_head"): {HOT},  # a change feed's HEAD of a new hot object
    # The SFTP intake (with SFTP_HOST set) writes documents onto the hot site and verifies them there.
    ("intake/sftp_transfer.py", "SftpTransfer.transfer"): {HOT_SFTP},
    ("intake/sftp_transfer.py", "SftpTransfer._multipart"): {HOT_SFTP},
    ("intake/sftp_transfer.py", "SftpTransfer._abort_stale_uploads"): {HOT_SFTP},
    ("intake/sftp_transfer.py", "SftpTransfer._verify"): {HOT_SFTP},
    ("intake/sftp_transfer.py", "SftpTransfer._recover"): {HOT_SFTP},
    ("replication/inventory.py", "list_page"): {HOT},  # the reconciliation sweep (intake/sweep.py)
    # Tracking-database backups (issue 17): written to, listed on and read back from the cold site.
    ("backup/store.py", "BackupStore._lock_args"): {COLD},
    ("backup/store.py", "BackupStore.put_file"): {COLD},
    ("backup/store.py", "BackupStore.put_bytes"): {COLD},
    ("backup/store.py", "BackupStore._confirmed"): {COLD},
    ("backup/store.py", "BackupStore.abort_stale_uploads"): {COLD},
    ("backup/store.py", "BackupStore.backup_ids"): {COLD},
    ("backup/store.py", "BackupStore.manifest"): {COLD},
    ("backup/store.py", "BackupStore._versions"): {COLD},
    ("backup/store.py", "BackupStore.fetch"): {COLD},
    ("replication/copier.py", "ObjectCopier._get_small"): {HOT},
    ("replication/copier.py", "ObjectCopier._head_source"): {HOT},
    ("replication/copier.py", "ObjectCopier._hash_pass"): {HOT},
    ("replication/copier.py", "ObjectCopier._range_chunks"): {HOT},
    ("replication/copier.py", "ObjectCopier.abort_upload"): {COLD},
    ("replication/copier.py", "ObjectCopier.abort_uploads_for_key"): {COLD},
    ("replication/copier.py", "ObjectCopier._copy_small"): {COLD},
    ("replication/copier.py", "ObjectCopier._put_if_absent"): {COLD},
    ("replication/copier.py", "ObjectCopier._copy_large_from"): {COLD},
    ("replication/copier.py", "ObjectCopier._complete_upload"): {COLD},
    ("replication/copier.py", "ObjectCopier._upload_parts"): {COLD},
    ("replication/cold_object.py", "cold_object_args"): {COLD},  # PutObject/CreateMultipartUpload arguments
    # verify.head_version: the cold copies (verification, audit, drills, restore, deletion checks) and the hot
    # object (the audit's check that it is unchanged; the deletion's check of the copied version).
    ("replication/verify.py", "head_version"): {COLD, HOT, HOT_DELETION},
    ("replication/verify.py", "ColdEvidence.from_head"): {COLD},
    ("replication/verify.py", "ColdEvidence.as_head"): {COLD},  # the cold HEAD an audit reads, rebuilt
    ("replication/verify.py", "verify_copy"): {COLD},
    ("replication/verify.py", "apply_retention"): {COLD},
    ("replication/verify.py", "cold_bucket_problem"): {COLD},
    ("replication/audit.py", "Auditor._audit_cold"): {COLD},
    ("replication/audit.py", "Auditor._audit_tags"): {COLD},
    ("replication/audit.py", "Auditor._tag_count_matches"): {COLD},
    ("replication/audit.py", "Auditor._orphans"): {COLD},
    ("replication/report.py", "write_report"): {COLD},
    ("replication/hot_cleanup.py", "conditional_delete_problem"): {HOT_DELETION},
    ("replication/hot_cleanup.py", "hot_bucket_versioned"): {HOT_DELETION},
    ("replication/hot_cleanup.py", "delete_verified_hot_objects"): {HOT_DELETION},
    ("replication/hot_cleanup.py", "cold_copy_problem"): {COLD},
    # The fast path: a HeadBucket asks the server's clock after a skew, on whichever site uses the fast path
    # (both by default); its get_object/head_object/put_object fall back to boto3 with the caller's arguments.
    ("replication/crt_s3.py", "CrtS3Client._ask_server_clock"): {HOT, COLD},
    ("replication/crt_s3.py", "CrtS3Client.get_object"): {FORWARD},
    ("replication/crt_s3.py", "CrtS3Client.head_object"): {FORWARD},
    ("replication/crt_s3.py", "CrtS3Client.put_object"): {FORWARD},
    ("journal/segments.py", "SegmentStore.put_once"): {COLD},
    ("journal/segments.py", "SegmentStore.list_segments"): {COLD},
    ("journal/segments.py", "SegmentStore.rewritten_segments"): {COLD},
    ("journal/segments.py", "SegmentStore.versions_of"): {COLD},
    ("journal/segments.py", "SegmentStore.read_object"): {COLD},
    ("journal/seal_store.py", "list_seal_objects"): {COLD},
    ("journal/seal_store.py", "seal_versions"): {COLD},
    ("journal/rebuild.py", "_sweep"): {COLD},
    ("journal/rebuild.py", "_row_from_head"): {COLD},
    ("retrieval/cold.py", "request_restore"): {COLD},
    ("retrieval/cold.py", "stream_version"): {COLD},
}.items()}
# Presigned URLs that are never sent: crt_s3 presigns requests only to have botocore prepare its operations
# (bucket "b", key "k") and to read the endpoint its rules give a bucket. Any other presigned URL is a request
# signed with our keys: it counts.
LOCAL_PRESIGN = {("replication/crt_s3.py", "CrtS3Client.__init__"), ("replication/crt_s3.py", "CrtS3Client._endpoint")}
# The fast path's own requests: each inside the method that replaces the boto3 method of the same operation.
CRT_MODULE = "replication/crt_s3.py"
CRT_METHOD_OF = {"GetObject": "get_object", "HeadObject": "head_object", "PutObject": "put_object",
                 "UploadPart": "upload_part_streamed"}


@dataclass(frozen=True)
class Use:
    """One thing in the code that needs S3 permissions."""
    module: str
    function: str
    line: int
    kind: str  # "call", "parameter", "answer", "raw"
    name: str  # the operation, the parameter or the answer field
    versioned: bool = False


def s3_operations() -> set[str]:
    model = botocore.session.get_session().get_service_model("s3")
    return {xform_name(name) for name in model.operation_names}


def _qualified_functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Top-level functions and methods (nested functions belong to theirs), with their qualified names."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield f"{node.name}.{item.name}", item


def _sets_version(node: ast.AST) -> bool:
    """Whether `node` puts a VersionId into request arguments: a dict key or a subscript assignment."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "VersionId" for k in sub.keys):
            return True
        if isinstance(sub, ast.Subscript) and isinstance(sub.ctx, ast.Store) \
                and isinstance(sub.slice, ast.Constant) and sub.slice.value == "VersionId":
            return True
    return False


def _call_versioned(call: ast.Call, function: ast.AST, helpers: dict[str, ast.AST]) -> bool:
    for keyword in call.keywords:
        if keyword.arg == "VersionId":
            return True
        if keyword.arg is None:  # **arguments
            value = keyword.value
            if isinstance(value, ast.Name) and _sets_version(function):
                return True
            if isinstance(value, ast.Call):
                target = value.func
                name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
                if name in helpers and _sets_version(helpers[name]):
                    return True
    return False


def _constant_arg(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def uses_in(module: str, source: str, operations: set[str]) -> list[Use]:
    """Every S3 use in one module's source."""
    tree = ast.parse(source)
    helpers = {name.rpartition(".")[2]: node for name, node in _qualified_functions(tree)}
    found: list[Use] = []
    for qualname, function in _qualified_functions(tree):
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                method = node.func.attr
                if method == "generate_presigned_url" and (module, qualname) in LOCAL_PRESIGN:
                    continue
                if method in ("get_paginator", "generate_presigned_url", "_call"):
                    operation = _constant_arg(node)
                    if operation is None:
                        found.append(Use(module, qualname, node.lineno, "call", f"{method}(<not a constant>)"))
                    elif method == "_call":
                        found.append(Use(module, qualname, node.lineno, "raw", operation))
                    else:
                        found.append(Use(module, qualname, node.lineno, "call", operation,
                                         _call_versioned(node, function, helpers)))
                elif method in operations or method in OPERATION_ACTIONS:
                    found.append(Use(module, qualname, node.lineno, "call", method,
                                     _call_versioned(node, function, helpers)))
                for keyword in node.keywords:  # put_object(..., Tagging=...), as keywords
                    if keyword.arg in PARAMETER_ACTIONS:
                        found.append(Use(module, qualname, node.lineno, "parameter", keyword.arg))
                if method == "get" and _constant_arg(node) in ANSWER_ACTIONS:  # head.get("ObjectLockMode")
                    found.append(Use(module, qualname, node.lineno, "answer", str(_constant_arg(node))))
            elif isinstance(node, ast.Dict):  # request arguments built as a dict
                for key in node.keys:
                    if isinstance(key, ast.Constant) and key.value in PARAMETER_ACTIONS:
                        found.append(Use(module, qualname, node.lineno, "parameter", key.value))
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) \
                    and isinstance(node.slice, ast.Constant) and node.slice.value in ANSWER_ACTIONS:
                found.append(Use(module, qualname, node.lineno, "answer", node.slice.value))
    return found


def package_sources() -> dict[str, str]:
    sources = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = str(path.relative_to(PACKAGE))
        if module.split("/")[0] not in NOT_PRODUCTION:
            sources[module] = path.read_text("utf-8")
    return sources


class AttributionError(AssertionError):
    pass


def needed_actions(sources: dict[str, str]) -> dict[str, set[str]]:
    """The actions each site's policy must grant for the code in `sources`. Raises AttributionError naming
    every S3 use that cannot be attributed (no site, an unknown operation, a raw request out of place)."""
    operations = s3_operations()
    uses = [use for module, source in sources.items() for use in uses_in(module, source, operations)]
    errors: list[str] = []
    needed: dict[str, set[str]] = defaultdict(set)
    versioned_reads: dict[str, bool] = defaultdict(bool)
    answers: list[tuple[str, Use]] = []
    for use in uses:
        where = f"vault_pipeline/{use.module}:{use.line} ({use.function})"
        if use.kind == "raw":
            if use.module != CRT_MODULE or CRT_METHOD_OF.get(use.name) != use.function.rpartition(".")[2]:
                errors.append(f"{where}: raw fast-path request {use.name} outside the method that replaces boto3's "
                              f"{xform_name(use.name)}: its callers would not account for it; add it to CRT_METHOD_OF")
            continue
        sites = SITE_OF.get((use.module, use.function))
        if sites is None:
            errors.append(f"{where}: S3 {use.kind} {use.name} in a function SITE_OF does not know: add "
                          f"({use.module!r}, {use.function!r}) with the site(s) it touches, then update deploy/iam/")
            continue
        if use.kind == "call":
            if use.name not in OPERATION_ACTIONS:
                errors.append(f"{where}: S3 operation {use.name!r} is not in OPERATION_ACTIONS: add its IAM "
                              "actions (AWS: 'Actions, resources, and condition keys for Amazon S3'), then update "
                              "deploy/iam/")
                continue
            actions, version_actions = OPERATION_ACTIONS[use.name]
            for site in sites - {FORWARD}:
                needed[site] |= actions | (version_actions if use.versioned else set())
                if use.versioned and use.name in ("head_object", "get_object"):
                    versioned_reads[site] = True
        elif use.kind == "parameter":
            for site in sites - {FORWARD}:
                needed[site].add(PARAMETER_ACTIONS[use.name])
        else:
            answers.extend((site, use) for site in sites - {FORWARD})
    for site, use in answers:
        needed[site] |= ANSWER_ACTIONS[use.name]
        if use.name == "TagCount" and versioned_reads[site]:
            needed[site].add("s3:GetObjectVersionTagging")
    stale = sorted(set(SITE_OF) - {(use.module, use.function) for use in uses})
    if stale:
        errors.append(f"SITE_OF names functions with no S3 use (moved or renamed?): {stale}")
    if errors:
        raise AttributionError("\n".join(errors))
    # The deletion policy is attached on top of the hot one: it holds only what the hot policy lacks.
    needed[HOT_DELETION] -= needed[HOT]
    needed[HOT_SFTP] -= needed[HOT]  # likewise the SFTP intake's
    return dict(needed)


def load_policy(site: str) -> dict:
    return json.loads((IAM / POLICY_FILES[site]).read_text())


def policy_actions(policy: dict) -> set[str]:
    actions: set[str] = set()
    for statement in policy["Statement"]:
        value = statement["Action"]
        actions |= {value} if isinstance(value, str) else set(value)
    return actions


def test_every_s3_use_is_attributed_to_a_site():
    needed_actions(package_sources())  # raises, naming each use it cannot place


@pytest.mark.parametrize("site", sorted(POLICY_FILES))
def test_policy_grants_exactly_what_the_code_uses(site):
    needed = needed_actions(package_sources())[site]
    granted = policy_actions(load_policy(site))
    name = f"deploy/iam/{POLICY_FILES[site]}"
    assert not needed - granted, f"{name} lacks {sorted(needed - granted)}, which the code uses"
    assert not granted - needed, f"{name} grants {sorted(granted - needed)}, which no code uses"


@pytest.mark.parametrize("site", sorted(POLICY_FILES))
def test_policy_structure(site):
    policy = load_policy(site)
    assert set(policy) == {"Version", "Statement"}
    assert policy["Version"] == "2012-10-17"
    bucket = f"arn:aws:s3:::{BUCKET_PLACEHOLDER[site]}"
    sids = [statement.get("Sid") for statement in policy["Statement"]]
    assert len(set(sids)) == len(sids) and all(sid and re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids), sids
    for statement in policy["Statement"]:
        assert set(statement) == {"Sid", "Effect", "Action", "Resource"}, statement  # no NotAction, no Condition
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert all(re.fullmatch(r"s3:[A-Za-z]+", action) for action in actions), actions  # no wildcard
        assert len(set(actions)) == len(actions), actions
        bucket_level = {action in BUCKET_LEVEL for action in actions}
        assert len(bucket_level) == 1, f"{statement['Sid']}: bucket-level and object-level actions mixed: {actions}"
        if bucket_level == {True}:
            assert resources == [bucket], f"{statement['Sid']}: bucket actions take the bucket ARN {bucket}"
        else:
            assert all(r == f"{bucket}/*" or (r.startswith(f"{bucket}/") and r.endswith("*")) for r in resources), \
                f"{statement['Sid']}: object actions take {bucket}/* (or a prefix of it)"


def test_deliberate_absences():
    cold = policy_actions(load_policy(COLD))
    # COMPLIANCE locks: the pipeline never deletes a cold version, never bypasses or configures a lock.
    for action in ("s3:BypassGovernanceRetention", "s3:DeleteObject", "s3:DeleteObjectVersion",
                   "s3:PutBucketObjectLockConfiguration", "s3:PutBucketVersioning", "s3:PutObjectLegalHold",
                   "s3:PutBucketPolicy", "s3:PutLifecycleConfiguration"):
        assert action not in cold, action
    hot = policy_actions(load_policy(HOT))
    # The hot site is read-only unless hot deletion is switched on (its own policy file).
    assert hot == {"s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion"}, hot
    # The SFTP intake adds documents to the hot site: it never deletes nor locks anything there.
    sftp = policy_actions(load_policy(HOT_SFTP))
    assert not {a for a in sftp if "Delete" in a or "Retention" in a or "Bypass" in a}, sftp
    deletion = load_policy(HOT_DELETION)
    for statement in deletion["Statement"]:
        if "s3:PutObject" in statement["Action"]:
            # The only hot write: the If-Match probe's sentinel object, under the probe prefix only.
            assert statement["Resource"] == [f"arn:aws:s3:::HOT_BUCKET/{PROBE_PREFIX}*"], statement
            assert statement["Action"] == ["s3:PutObject"], statement


def test_an_operation_added_without_a_policy_update_is_caught():
    sources = package_sources()
    baseline = needed_actions(sources)
    # A cold-site function starts deleting versions: the cold policy no longer matches.
    sources["retrieval/cold.py"] += (
        "\n\ndef stream_version(client, bucket, key, version_id):\n"
        "    client.delete_object(Bucket=bucket, Key=key, VersionId=version_id)\n")
    changed = needed_actions(sources)
    assert changed[COLD] - baseline[COLD] == {"s3:DeleteObject", "s3:DeleteObjectVersion"}
    # An S3 call in a function nobody attributed fails, naming it.
    sources = package_sources()
    sources["replication/policy.py"] += "\n\ndef peek(client):\n    return client.get_object(Bucket='b', Key='k')\n"
    with pytest.raises(AttributionError, match=r"policy\.py.*peek.*SITE_OF"):
        needed_actions(sources)
    # An operation the mapping table does not know fails with a message telling to add it.
    sources = package_sources()
    sources["replication/report.py"] += ("\n\ndef write_report(cold, bucket):\n"
                                         "    cold.put_bucket_policy(Bucket=bucket, Policy='{}')\n")
    with pytest.raises(AttributionError, match=r"put_bucket_policy.*OPERATION_ACTIONS: add"):
        needed_actions(sources)
    # A raw fast-path request outside the method it replaces fails too.
    sources = package_sources()
    sources[CRT_MODULE] += "\n\nclass CrtS3Client:\n    def sneak(self):\n        self._call('DeleteObject', {})\n"
    with pytest.raises(AttributionError, match="raw fast-path request DeleteObject"):
        needed_actions(sources)


def test_the_scan_sees_the_fast_path_and_the_answers():
    """What the attribution rests on is found: the awscrt requests, versioned reads, lock and tag parameters and
    answers (guards against a scan that silently finds nothing)."""
    operations = s3_operations()
    sources = package_sources()
    uses = [use for module, source in sources.items() for use in uses_in(module, source, operations)]
    raw = {use.name for use in uses if use.kind == "raw"}
    assert raw == set(CRT_METHOD_OF), raw
    assert any(use.kind == "call" and use.name == "get_object" and use.versioned
               and use.function == "ObjectCopier._hash_pass" for use in uses)
    assert any(use.kind == "call" and use.name == "upload_part_streamed" for use in uses)
    assert {use.name for use in uses if use.kind == "parameter"} >= {"Tagging", "ObjectLockMode"}
    assert {use.name for use in uses if use.kind == "answer"} >= {"ObjectLockRetainUntilDate", "TagCount"}
