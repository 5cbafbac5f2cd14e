"""`durable schedules list/show/pause/resume/delete/trigger`."""

from __future__ import annotations

import argparse
import json

from durable import _management, _schedules
from durable._client import Client
from durable._core.schedules import ScheduleInfo
from durable.cli.args import Parser
from durable.cli.console import EXIT_NOT_FOUND, EXIT_OK, note, print_json, print_line
from durable.cli.formatting import (
    LIST_TICKS,
    schedule_json,
    schedule_lines,
    schedule_rows,
    schedule_state,
    workflow_json,
)


def add_parser(groups: argparse._SubParsersAction[Parser]) -> None:
    """Add `schedules` and its commands to `durable`'s subcommands."""
    schedules = groups.add_parser(
        "schedules", help="list, show, pause, resume, delete, trigger cron schedules"
    )
    schedule_commands = schedules.add_subparsers(dest="command", metavar="COMMAND", required=True)
    schedule_list = schedule_commands.add_parser(
        "list",
        help="list schedules with their next tick times",
        description="List schedules by name, each with its state (active, paused or ended), "
        f"its last tick and its next {LIST_TICKS} tick times.",
    )
    schedule_list.add_argument(
        "--workflow", metavar="NAME", help="only schedules that start workflow NAME"
    )
    schedule_list.set_defaults(run=_list)
    schedule_show = schedule_commands.add_parser(
        "show",
        help="show a schedule, its next tick times and why its workflows may not run",
    )
    schedule_pause = schedule_commands.add_parser(
        "pause", help="pause a schedule: no workflow starts for its ticks until resumed"
    )
    schedule_resume = schedule_commands.add_parser(
        "resume", help="resume a paused schedule from its next tick (missed ticks are skipped)"
    )
    schedule_delete = schedule_commands.add_parser(
        "delete",
        help="delete a schedule (workflows it started are left as they are); exit 1 if "
        "there was none",
    )
    schedule_trigger = schedule_commands.add_parser(
        "trigger", help="start the schedule's workflow now and print its ID"
    )
    for command, run in (
        (schedule_show, _show),
        (schedule_pause, _pause),
        (schedule_resume, _resume),
        (schedule_delete, _delete),
        (schedule_trigger, _trigger),
    ):
        command.add_argument("name", metavar="NAME")
        command.set_defaults(run=run)

    for command in (
        schedule_list,
        schedule_show,
        schedule_pause,
        schedule_resume,
        schedule_delete,
        schedule_trigger,
    ):
        command.add_argument("--json", action="store_true", help="print JSON")


def _list(args: argparse.Namespace, client: Client) -> int:
    found = _schedules.list_schedules(args.workflow, client=client)
    if args.json:
        print_json([schedule_json(info) for info in found])
    elif found:
        for line in schedule_rows(found):
            print_line(line)
    else:
        note("no schedules" + (f" start workflow {args.workflow!r}" if args.workflow else ""))
    return EXIT_OK


def _show(args: argparse.Namespace, client: Client) -> int:
    info = _schedules.get_schedule(args.name, client=client)
    if args.json:
        print_json({**schedule_json(info), "warnings": list(info.warnings)})
    else:
        for line in schedule_lines(info):
            print_line(line)
    return EXIT_OK


def _print_state(args: argparse.Namespace, info: ScheduleInfo) -> None:
    if args.json:
        print_json(schedule_json(info))
    else:
        print_line(f"{info.name}  {schedule_state(info)}")


def _pause(args: argparse.Namespace, client: Client) -> int:
    _print_state(args, _schedules.pause_schedule(args.name, client=client))
    return EXIT_OK


def _resume(args: argparse.Namespace, client: Client) -> int:
    _print_state(args, _schedules.resume_schedule(args.name, client=client))
    return EXIT_OK


def _delete(args: argparse.Namespace, client: Client) -> int:
    deleted = _schedules.delete_schedule(args.name, client=client)
    if args.json:
        print_line(json.dumps({"name": args.name, "deleted": deleted}))
    if not deleted:
        note(f"schedule {args.name!r} does not exist; nothing deleted")
        return EXIT_NOT_FOUND
    if not args.json:
        note(f"deleted schedule {args.name!r}; workflows it started are left as they are")
    return EXIT_OK


def _trigger(args: argparse.Namespace, client: Client) -> int:
    started = client.trigger_schedule(args.name)
    info = _management.workflow_info(started)
    if args.json:
        print_json(workflow_json(info))
    else:
        print_line(info.workflow_id)
    return EXIT_OK
