"""Client CPU per document request, for the candidate S3 data paths, side by side (issue 13).

    .venv/bin/python benchmarks/request_bench.py [--objects 1500] [--size 65536] [--threads 8] [--runs 3]
                                                 [--candidates boto3,botocore-signer,awscrt] [--profile]
                                                 [--out benchmarks/results]

What a small document costs the copy path in requests: a GET on the hot site, a PUT (SHA-256 checksum,
metadata, lock, class, tags) and a HEAD on the cold site. Starts one SeaweedFS site on free loopback ports
in a temporary directory, uploads --objects objects of --size bytes once, then runs each candidate in its
own process (A B C A B C... for --runs), each over the same objects with --threads threads, and reports
the median objects/s and client CPU (user + system of the candidate's process, all its threads, awscrt's
native ones included) per object and per request. The candidates:

* boto3: the plain boto3 client, as the naive loop and every call outside the hot loop use it;
* botocore-signer: botocore's serializer, its SigV4 signer (S3SigV4Auth) and its urllib3 transport
  (URLLib3Session, which honours CA bundles and proxies) and its parser, without the client's event and
  endpoint machinery: the "botocore's own signer over a leaner transport" candidate;
* awscrt: the product's fast path (vault_pipeline.replication.crt_s3.CrtS3Client): botocore serializes and
  parses, awscrt signs, sends, retries and validates checksums on its own I/O threads.

--profile records each candidate's process with py-spy (--gil, speedscope files in --out). Writes
request_bench.json and request_bench.md to --out. docs/architecture.md ("The S3 data path") gives the
decision these numbers support.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
CANDIDATES = ("boto3", "botocore-signer", "awscrt")
REQUESTS_PER_OBJECT = 3
ACCESS_KEY, SECRET_KEY, REGION = "bench-access", "bench-secret-key", "us-east-1"


# -- the candidates, each run in a child process ------------------------------------------------------
class BotocoreSignerClient:
    """get_object / head_object / put_object made of botocore's parts, without its client machinery."""

    def __init__(self, endpoint_url: str) -> None:
        import boto3
        from botocore import parsers, serialize
        from botocore.auth import S3SigV4Auth
        from botocore.config import Config
        from botocore.credentials import Credentials
        from botocore.httpsession import URLLib3Session

        from vault_pipeline.replication.crt_s3 import parse_timestamp

        self._boto = boto3.client("s3", endpoint_url=endpoint_url, aws_access_key_id=ACCESS_KEY,
                                  aws_secret_access_key=SECRET_KEY,
                                  config=Config(region_name=REGION, s3={"addressing_style": "path"}))
        self._model = self._boto.meta.service_model
        self._serializer = serialize.create_serializer("rest-xml", include_validation=True)
        self._parser = parsers.RestXMLParser(timestamp_parser=parse_timestamp)
        self._signer = S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION)
        self._http = URLLib3Session(max_pool_connections=64)
        self._endpoint = endpoint_url.rstrip("/")

    def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        from botocore.awsrequest import AWSRequest
        from botocore.utils import percent_encode_sequence

        model = self._model.operation_model(operation)
        serialized = self._serializer.serialize_to_request(
            {k: v for k, v in params.items() if k != "Body"}, model)
        url = self._endpoint + serialized["url_path"]
        if serialized["query_string"]:
            url += "?" + percent_encode_sequence(serialized["query_string"])
        request = AWSRequest(method=serialized["method"], url=url, headers=serialized["headers"],
                             data=params.get("Body"))
        self._signer.add_auth(request)
        response = self._http.send(request.prepare())
        body = response.content
        parsed = self._parser.parse({"headers": response.headers, "status_code": response.status_code,
                                     "body": b"" if operation == "GetObject" else body}, model.output_shape)
        if response.status_code >= 300:
            raise RuntimeError(f"{operation}: {response.status_code} {parsed.get('Error')}")
        if operation == "GetObject":
            parsed["Body"] = body
        return parsed

    def get_object(self, **params: Any) -> dict[str, Any]:
        return self._call("GetObject", params)

    def head_object(self, **params: Any) -> dict[str, Any]:
        return self._call("HeadObject", params)

    def put_object(self, **params: Any) -> dict[str, Any]:
        return self._call("PutObject", params)


def make_candidate(name: str, endpoint_url: str) -> Any:
    from vault_pipeline.replication.crt_s3 import CrtS3Client
    from vault_pipeline.replication.s3client import SiteConfig, make_client

    if name == "botocore-signer":
        return BotocoreSignerClient(endpoint_url)
    site = SiteConfig("bench", endpoint_url, REGION, ACCESS_KEY, SECRET_KEY, "hot", fast_path=name == "awscrt")
    client = make_client(site)
    assert isinstance(client, CrtS3Client) == (name == "awscrt"), type(client)
    return client


def read_body(response: dict[str, Any]) -> bytes:
    body = response["Body"]
    return body if isinstance(body, bytes) else body.read()


def child(args: argparse.Namespace) -> int:
    """One candidate over every object: GET hot, PUT cold, HEAD cold. Prints one JSON line."""
    client = make_candidate(args.candidate, args.endpoint)
    keys = [f"doc/{i:06d} odd key+%.pdf" for i in range(args.objects)]
    retain = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    prefix = f"{args.candidate}-{os.getpid()}/"

    def copy_one(key: str) -> None:
        body = read_body(client.get_object(Bucket="hot", Key=key))
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
        client.put_object(Bucket="cold", Key=prefix + key, Body=body, ChecksumSHA256=checksum,
                          Metadata={"vault-sha256": hashlib.sha256(body).hexdigest(), "document-type": "payslip"},
                          ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=retain, StorageClass="STANDARD",
                          Tagging="document-type=payslip")
        head = client.head_object(Bucket="cold", Key=prefix + key)
        assert head["ContentLength"] == len(body), head

    copy_one(keys[0])  # warm-up: connections, endpoint resolution, imports
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(copy_one, keys))
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"candidate": args.candidate, "objects": len(keys), "wall_s": wall, "cpu_s": cpu,
                      "user_s": after.ru_utime - before.ru_utime, "system_s": after.ru_stime - before.ru_stime}))
    return 0


# -- the driver ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1500)
    parser.add_argument("--size", type=int, default=64 * 1024, help="bytes per object (default 64 KiB)")
    parser.add_argument("--threads", type=int, default=8, help="objects in flight, as REPLICATION_CONCURRENCY")
    parser.add_argument("--runs", type=int, default=3, help="runs per candidate; medians reported")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--profile", action="store_true", help="py-spy --gil speedscope profile of each run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", dest="candidate", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    if args.candidate is None and (not names or set(names) - set(CANDIDATES)):
        parser.error(f"--candidates: choose among {', '.join(CANDIDATES)}")
    if args.objects < 10 or args.runs < 1 or not 1 <= args.threads <= 256 or args.size < 0:
        parser.error("--objects >= 10, --runs >= 1, --threads 1..256, --size >= 0")
    args.names = names
    return args


def run_child(args: argparse.Namespace, name: str, endpoint: str, run: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", name, "--endpoint", endpoint, "--objects", str(args.objects),
               "--threads", str(args.threads)]
    if args.profile:
        from copybench.contenders import find_py_spy

        profile = args.out / f"request-{name}-r{run}.speedscope.json"
        command = [str(find_py_spy()), "record", "--gil", "--rate", "200", "--format", "speedscope",
                   "--output", str(profile), "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{name} run {run} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def summarize(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for name, runs in results.items():
        objects = runs[0]["objects"]
        cpu_ms = statistics.median(1000 * r["cpu_s"] / objects for r in runs)
        rows.append({"candidate": name, "runs": len(runs),
                     "objects_per_s": round(statistics.median(objects / r["wall_s"] for r in runs), 1),
                     "cpu_ms_per_object": round(cpu_ms, 3),
                     "cpu_ms_per_request": round(cpu_ms / REQUESTS_PER_OBJECT, 3),
                     "system_share": round(statistics.median(r["system_s"] / r["cpu_s"] for r in runs), 2)})
    base = next((r for r in rows if r["candidate"] == "boto3"), rows[0])
    for row in rows:
        row["cpu_vs_boto3"] = round(row["cpu_ms_per_object"] / base["cpu_ms_per_object"], 2)
    return rows


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"Client CPU per document (GET hot + PUT cold + HEAD cold), {args.objects} objects of "
             f"{args.size:,} bytes, {args.threads} threads, medians of {args.runs} runs, SeaweedFS on loopback.", "",
             "| candidate | objects/s | CPU ms/object | CPU ms/request | system share | CPU vs boto3 |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['candidate']} | {r['objects_per_s']} | {r['cpu_ms_per_object']} | {r['cpu_ms_per_request']} | "
              f"{r['system_share']} | {r['cpu_vs_boto3']} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(HERE))  # copybench
    if args.candidate:
        return child(args)
    from vault_pipeline.devstack.buckets import ensure_bucket
    from vault_pipeline.devstack.ports import find_free_port_block
    from vault_pipeline.devstack.seaweed import SeaweedSite

    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="vault-request-bench-"))
    site = SeaweedSite("bench", root / "weed", find_free_port_block(), ACCESS_KEY, SECRET_KEY)
    try:
        site.start()
        client = site.client()
        ensure_bucket(client, "hot", object_lock=False)
        ensure_bucket(client, "cold", object_lock=True)
        body = os.urandom(args.size)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: client.put_object(Bucket="hot", Key=f"doc/{i:06d} odd key+%.pdf", Body=body),
                          range(args.objects)))
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in args.names}
        for run in range(1, args.runs + 1):
            for name in args.names:
                result = run_child(args, name, site.endpoint_url, run)
                results[name].append(result)
                print(f"[request_bench] {name} run {run}: {result['objects'] / result['wall_s']:.0f} objects/s, "
                      f"{1000 * result['cpu_s'] / result['objects']:.2f} CPU ms/object", flush=True)
    finally:
        site.stop()
        shutil.rmtree(root, ignore_errors=True)
    rows = summarize(results)
    table = markdown(rows, args)
    (args.out / "request_bench.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                             "rows": rows, "runs": results}, indent=2))
    (args.out / "request_bench.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
