"""`driftwatch`: onboard a dataset without Airflow: draft its config, check it, land batches.

    driftwatch init  --reference PATH|s3://bucket/key --target COL --id COL [--name NAME]
    driftwatch check config/models/NAME.yaml [--reference PATH] [--batch PATH] [--labels PATH]
    driftwatch land  --model NAME --date YYYY-MM-DD FILE [--labels FILE]
    driftwatch history --model NAME [--last N]

S3 is reached with boto3's usual settings; `--endpoint-url` (or AWS_ENDPOINT_URL) points it at
MinIO, moto or the embedded stack, whose endpoint is also read from .state/stack.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

STACK_STATE = Path(".state") / "stack.json"


def _endpoint(explicit: str | None) -> str | None:
    """--endpoint-url, else AWS_ENDPOINT_URL, else the running embedded stack's S3 endpoint."""
    if explicit or os.environ.get("AWS_ENDPOINT_URL"):
        return explicit or os.environ["AWS_ENDPOINT_URL"]
    if STACK_STATE.is_file():
        return json.loads(STACK_STATE.read_text()).get("endpoints", {}).get("s3_endpoint")
    return None


def s3_client(endpoint_url: str | None) -> Any:
    """A boto3 S3 client; on a loopback endpoint without credentials, the test ones moto takes."""
    import boto3

    local = bool(endpoint_url) and ("127.0.0.1" in endpoint_url or "localhost" in endpoint_url)
    if local and not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
    return boto3.client("s3", endpoint_url=endpoint_url)


def read_frame(location: str, endpoint_url: str | None, text_columns: list[str] | None = None) -> Any:
    """A CSV or Parquet file, local or s3://bucket/key, parsed as the pipeline parses batches."""
    from driftwatch import ingest, layout, storage

    fmt = layout.batch_format(location)
    if fmt is None:
        raise ValueError(f"{location}: expected a .csv or .parquet file")
    if location.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            data = storage.read_bytes(s3_client(endpoint_url), *storage.parse_s3_uri(location))
        except (BotoCoreError, ClientError) as err:
            where = endpoint_url or "AWS"
            hint = "is the endpoint up? see --endpoint-url"
            raise OSError(f"{location} cannot be read from {where}: {err} ({hint})") from None
    else:
        path = Path(location)
        if not path.is_file():
            raise FileNotFoundError(f"{location}: no such file")
        data = path.read_bytes()
    return ingest.parse_object(data, fmt, location, text_columns=text_columns or ())


def cmd_init(args: argparse.Namespace) -> int:
    """Draft config/models/<name>.yaml from the reference file."""
    from driftwatch import onboarding, storage

    try:
        reference = read_frame(args.reference, _endpoint(args.endpoint_url), [args.id])
    except (OSError, ValueError) as err:  # a missing file, an unreachable or refusing S3, an unreadable file
        print(f"driftwatch init: cannot read the reference: {err}", file=sys.stderr)
        return 2
    name = args.name or Path(args.reference).stem.lower().replace("-", "_").replace(".", "_")
    if args.reference.startswith("s3://"):
        bucket, key = storage.parse_s3_uri(args.reference)
    else:
        bucket, key = args.bucket, f"reference/{name}/{Path(args.reference).name}"
    try:
        text = onboarding.draft_config(
            reference,
            name=name,
            target=args.target,
            id_column=args.id,
            bucket=bucket,
            reference_key=key,
            recipients=args.email or ["ml-oncall@example.com"],
            start=date.fromisoformat(args.start_date) if args.start_date else date.today(),
        )
    except ValueError as err:
        print(f"driftwatch init: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.config_dir) / f"{name}.yaml"
    if out.exists() and not args.force:
        print(f"driftwatch init: {out} exists; pass --force to replace it", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    if not args.reference.startswith("s3://"):
        print(f"next: driftwatch land --model {name} --reference {args.reference}  (puts it at s3://{bucket}/{key})")
    print(f"then: driftwatch check {out} --batch <a batch file>")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Load a config and run what the monitor would run on a sample batch; print every problem at once."""
    from driftwatch import checks
    from driftwatch.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(f"config: {err}")
        return 1
    endpoint = _endpoint(args.endpoint_url)
    reference_at = args.reference or f"s3://{cfg.storage.bucket}/{cfg.storage.reference_key}"
    report = checks.run_checks(
        cfg,
        load=lambda location, text: read_frame(location, endpoint, text),
        reference=reference_at,
        batch=args.batch,
        labels=args.labels,
    )
    for line in report.lines:
        print(line)
    if report.problems:
        print(f"\n{len(report.problems)} problem(s):")
        for problem in report.problems:
            print(f"  - {problem}")
        return 1
    print("\nno problems found")
    return 0


def cmd_land(args: argparse.Namespace) -> int:
    """Put a batch (and its labels), or the reference, where the model's config says they go."""
    from botocore.exceptions import BotoCoreError, ClientError

    from driftwatch import landing

    cfg = _model_config(args.model, args.config_dir, "land")
    if cfg is None:
        return 2
    client = s3_client(_endpoint(args.endpoint_url))
    try:
        landed = landing.land(
            client,
            cfg,
            batch_date=args.date,
            batch=Path(args.file) if args.file else None,
            labels=Path(args.labels) if args.labels else None,
            reference=Path(args.reference) if args.reference else None,
            create_bucket=args.create_bucket,
        )
    except landing.LandingError as err:
        print(f"driftwatch land: {err}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as err:  # nothing half-landed: each file is one PUT
        print(f"driftwatch land: S3 refused or is unreachable ({err}); see --endpoint-url", file=sys.stderr)
        return 2
    for uri in landed:
        print(f"landed {uri}")
    return 0


def _model_config(name: str, directory: str | None, command: str) -> Any:
    """The model's validated config; None (after saying why on stderr) when it has none or it is invalid."""
    from driftwatch.config import ConfigError, config_dir, load_configs

    try:
        configs = {c.name: c for c in load_configs(directory or config_dir())}
    except ConfigError as err:
        print(f"config: {err}", file=sys.stderr)
        return None
    if name not in configs:
        print(f"driftwatch {command}: no model {name!r}; configured: {', '.join(sorted(configs))}", file=sys.stderr)
        return None
    return configs[name]


def cmd_history(args: argparse.Namespace) -> int:
    """One line per batch from the model's history records: validation, drift share, estimate, policy, action."""
    from botocore.exceptions import BotoCoreError, ClientError

    from driftwatch import history, layout

    cfg = _model_config(args.model, args.config_dir, "history")
    if cfg is None:
        return 2
    try:
        records = history.read_history(s3_client(_endpoint(args.endpoint_url)), cfg, last=args.last)
    except (BotoCoreError, ClientError) as err:
        print(f"driftwatch history: S3 refused or is unreachable ({err}); see --endpoint-url", file=sys.stderr)
        return 2
    if not records:
        print(f"no batch recorded yet under s3://{cfg.storage.bucket}/{layout.history_prefix(cfg)}")
        return 0
    rows = [history.summary_row(str(r.get("batch_date", "?")), r) for r in records]
    print("\n".join(history.table_lines(rows)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftwatch", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint-url", help="S3 endpoint: MinIO, moto, the embedded stack (default: its state)")
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", parents=[common], help="draft config/models/<name>.yaml from a reference file")
    init.add_argument("--reference", required=True, help="CSV or Parquet, a local path or s3://bucket/key")
    init.add_argument("--target", required=True, help="the label column")
    init.add_argument("--id", required=True, help="the column that identifies a row (joins labels)")
    init.add_argument("--name", help="model name (default: from the file name)")
    init.add_argument("--bucket", default="driftwatch-demo", help="bucket for a local reference (default %(default)s)")
    init.add_argument("--email", action="append", help="alert recipient (repeatable)")
    init.add_argument("--start-date", help="first batch date, YYYY-MM-DD (default: today)")
    init.add_argument("--config-dir", default="config/models", help="where to write (default %(default)s)")
    init.add_argument("--out", help="write to this file instead")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(run=cmd_init)

    check = sub.add_parser(
        "check", parents=[common], help="run validation, drift and a trial fit in-process, without Airflow"
    )
    check.add_argument("config")
    check.add_argument("--reference", help="reference file (default: the config's S3 location)")
    check.add_argument("--batch", help="a sample batch: CSV or Parquet, local or s3://")
    check.add_argument("--labels", help="labels of that batch, to check they join")
    check.set_defaults(run=cmd_check)

    land = sub.add_parser("land", parents=[common], help="upload a batch and its labels under the config's prefixes")
    land.add_argument("--model", required=True)
    land.add_argument("--date", help="batch date YYYY-MM-DD (for a batch or labels)")
    land.add_argument("file", nargs="?", help="the batch file")
    land.add_argument("--labels", help="its labels file")
    land.add_argument("--reference", help="upload this file as the model's reference instead")
    land.add_argument("--create-bucket", action="store_true", help="create the bucket when it does not exist")
    land.add_argument("--config-dir", help="model configs (default: $DRIFTWATCH_CONFIG_DIR or config/models)")
    land.set_defaults(run=cmd_land)

    shown = sub.add_parser("history", parents=[common], help="one line per recorded batch of a model")
    shown.add_argument("--model", required=True)
    shown.add_argument("--last", type=int, help="only the newest N batches")
    shown.add_argument("--config-dir", help="model configs (default: $DRIFTWATCH_CONFIG_DIR or config/models)")
    shown.set_defaults(run=cmd_history)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
