"""`durable queues show`: a queue's limits, whether it is paused, and what waits and runs
on it, per partition; `durable queues pause` / `resume`."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from durable import _queues
from durable._client import Client
from durable._queues import QueueInfo
from durable.cli.args import Parser, whole_number
from durable.cli.console import EXIT_OK, note, print_json, print_line
from durable.cli.formatting import table


def _max_partitions(text: str) -> int:
    value = whole_number(1)(text)
    if value > _queues.MAX_PARTITIONS:
        raise argparse.ArgumentTypeError(f"{text!r} must be {_queues.MAX_PARTITIONS} or less")
    return value


def add_parser(groups: argparse._SubParsersAction[Parser]) -> None:
    """Add `queues` and its commands to `durable`'s subcommands."""
    queues = groups.add_parser("queues", help="show a queue's limits and load per partition")
    commands = queues.add_subparsers(dest="command", metavar="COMMAND", required=True)
    show = commands.add_parser(
        "show",
        help="show a queue's limits and its enqueued, delayed and running workflows, in "
        "total and per partition",
        description="Show queue NAME: its limits (as a Worker serving it or configure() "
        "stored them; none for a queue never configured), and its ENQUEUED workflows (due "
        "or not), those not due yet (delayed), and its running (PENDING) ones, in total and "
        "for each partition, most enqueued first. Workflows enqueued without a partition "
        "key are shown as partition '(none)'. A queue nobody used shows zeros.",
    )
    show.add_argument("name", metavar="NAME")
    show.add_argument(
        "--max-partitions",
        type=_max_partitions,
        metavar="N",
        help=f"show at most N partitions, 1-{_queues.MAX_PARTITIONS} (default: 100)",
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=_show)

    pause = commands.add_parser(
        "pause",
        help="pause a queue: workers are handed none of its workflows until it is resumed",
        description="Pause queue NAME: from now on no worker is handed any of its workflows "
        "until `queues resume NAME`; those running go on. Survives coordinator restarts; "
        "`queues show` shows it. Pausing a paused queue changes nothing.",
    )
    resume = commands.add_parser(
        "resume", help="resume a paused queue: its waiting workflows are handed out again"
    )
    for command, run in ((pause, _pause), (resume, _resume)):
        command.add_argument("name", metavar="NAME")
        command.add_argument("--json", action="store_true", help="print JSON")
        command.set_defaults(run=run)


def queue_json(info: QueueInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "concurrency": info.concurrency,
        "worker_concurrency": info.worker_concurrency,
        "rate_limit": (
            {"limit": info.rate_limit[0], "period_seconds": info.rate_limit[1]}
            if info.rate_limit
            else None
        ),
        "limits_per_partition": info.limits_per_partition,
        "paused": info.paused,
        "total": {k: v for k, v in dataclasses.asdict(info.total).items() if k != "partition_key"},
        "partitions": [dataclasses.asdict(p) for p in info.partitions],
        "partitions_truncated": info.partitions_truncated,
    }


def queue_lines(info: QueueInfo) -> list[str]:
    scope = " per partition" if info.limits_per_partition else ""
    rate = f"{info.rate_limit[0]} per {info.rate_limit[1]:g}s{scope}" if info.rate_limit else "none"
    total = info.total
    lines = [
        f"queue               {info.name}",
        f"concurrency         {info.concurrency or 'none'}{scope if info.concurrency else ''}",
        f"worker concurrency  {info.worker_concurrency or 'none'}",
        f"rate limit          {rate}",
        f"paused              {'yes: nothing new is handed out' if info.paused else 'no'}",
        f"total               {total.enqueued} enqueued ({total.delayed} delayed),"
        f" {total.running} running",
    ]
    if info.partitions:
        lines.append("")
        lines += table(
            ["PARTITION", "ENQUEUED", "DELAYED", "RUNNING"],
            [
                [p.partition_key or "(none)", str(p.enqueued), str(p.delayed), str(p.running)]
                for p in info.partitions
            ],
        )
    return lines


def _show(args: argparse.Namespace, client: Client) -> int:
    info = _queues.get_queue(args.name, max_partitions=args.max_partitions, client=client)
    if args.json:
        print_json(queue_json(info))
        return EXIT_OK
    for line in queue_lines(info):
        print_line(line)
    if info.partitions_truncated:
        note(f"only the {len(info.partitions)} busiest partitions are shown (--max-partitions)")
    return EXIT_OK


def _set_paused(args: argparse.Namespace, client: Client, paused: bool) -> int:
    config = client.set_queue_paused(args.name, paused)
    if args.json:
        print_json({"name": config.name, "paused": config.paused})
    else:
        print_line(f"queue {config.name} {'paused' if config.paused else 'resumed'}")
    return EXIT_OK


def _pause(args: argparse.Namespace, client: Client) -> int:
    return _set_paused(args, client, True)


def _resume(args: argparse.Namespace, client: Client) -> int:
    return _set_paused(args, client, False)
