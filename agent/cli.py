"""The ``hub`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent import __version__
from agent.errors import ConfigError, HubError, TraceError

if TYPE_CHECKING:
    from agent.messages import AlertMessage
    from agent.runtime import Runtime

log = logging.getLogger("hub")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"unknown time zone {name!r}") from err


def _speed(text: str) -> float | str:
    if text == "max":
        return "max"
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError('speed is "max" or a positive number') from err
    if value <= 0:
        raise argparse.ArgumentTypeError('speed is "max" or a positive number')
    return value


# ---- config ------------------------------------------------------------------------------
def cmd_config_check(args: argparse.Namespace) -> int:
    from agent.config import load_config

    try:
        config = load_config(args.file)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    drivers = ", ".join(d.type for d in config.drivers) or "none"
    print(
        f"{args.file}: OK (hub {config.hub.id}, {len(config.home.sensors)} sensor(s), "
        f"drivers: {drivers})"
    )
    return EXIT_OK


# ---- run and replay ----------------------------------------------------------------------
def _run_runtime(runtime: Runtime) -> int:
    """Run to the end; a replay prints what it did."""
    try:
        stats = asyncio.run(runtime.run())
    except TraceError as err:
        print(f"replay stopped: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except HubError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    if runtime.replay:
        days = 0.0
        if stats.first_wall is not None and stats.last_wall is not None:
            days = (stats.last_wall - stats.first_wall) / 86400
        print(f"replayed {stats.events} events over {days:.1f} days")
        for key, n in sorted(stats.alerts.items()):
            print(f"  alerts {key}: {n}")
        for sensor, n in sorted(stats.unknown_sensors.items()):
            print(f"  ignored {n} event(s) of sensor {sensor!r}: not in the home map")
        for health in runtime.driver_health.values():
            if health.malformed_count:
                print(f"  skipped {health.malformed_count} malformed line(s)")
        print(f"  heartbeats: {stats.heartbeats}; outbox left: {runtime.outbox.depth()}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.runtime import Runtime

    try:
        config = load_config(args.config)
        runtime = Runtime(config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    except HubError as err:  # the outbox file is from a newer agent, for one
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    return _run_runtime(runtime)


def cmd_replay(args: argparse.Namespace) -> int:
    from agent.messages import encode
    from agent.replay import replay_runtime

    with contextlib.ExitStack() as stack:
        hook = None
        if args.alerts_out is not None:
            out = stack.enter_context(args.alerts_out.open("w", encoding="utf-8"))

            def hook(message: AlertMessage) -> None:
                out.write(encode(message).decode() + "\n")

        try:
            runtime = replay_runtime(args.trace, args.config, args.speed, hook)
        except ConfigError as err:
            print(err, file=sys.stderr)
            return EXIT_BAD_INPUT
        except TraceError as err:
            print(f"cannot replay: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except HubError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_FAILED
        return _run_runtime(runtime)


# ---- traces ------------------------------------------------------------------------------
def cmd_trace_import(args: argparse.Namespace) -> int:
    from agent.traces.importing import save

    tz = args.tz
    try:
        if args.format == "ordonez":
            from agent.traces.ordonez import import_ordonez

            imported = import_ordonez(args.sources, tz)
        elif args.format == "kasteren":
            from agent.traces.kasteren import import_kasteren

            imported = import_kasteren(args.sources, tz)
        else:
            from agent.traces.casas import import_casas

            if args.map is None:
                print("a CASAS import needs --map SENSORS.toml", file=sys.stderr)
                return EXIT_BAD_INPUT
            if len(args.sources) != 1:
                print("a CASAS import takes one source file", file=sys.stderr)
                return EXIT_BAD_INPUT
            imported = import_casas(args.sources[0], tz, args.map)
    except (ConfigError, TraceError) as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        print(f"cannot read the source: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for warning in imported.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    save(imported, args.output)
    print(
        f"{args.output}: {imported.activations} activations, {len(imported.events)} events, "
        f"{len(imported.header.home.sensors)} sensors, {len(imported.labels)} labels"
    )
    return EXIT_OK


def cmd_trace_info(args: argparse.Namespace) -> int:
    from agent.traces.info import render, trace_info

    try:
        info = trace_info(args.trace)
    except TraceError as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    print(render(info))
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from agent.traces.format import labels_path, write_labels, write_trace
    from agent.traces.simulate import parse_incident, simulate

    try:
        incidents = [parse_incident(text, args.start, args.tz) for text in args.incident]
    except ValueError as err:
        print(f"--incident: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        sim = simulate(args.days, args.seed, args.start, args.tz, args.profile, incidents)
    except ValueError as err:  # incidents that cannot go together, days out of range
        print(f"hub simulate: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    n = write_trace(args.output, sim.header, sim.events)
    write_labels(labels_path(args.output), sim.labels)
    print(f"{args.output}: {args.days} days, {n} events, {len(incidents)} incident(s)")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    return run_demo(days=args.days, seed=args.seed, incidents=args.incident, workdir=args.workdir)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from agent.config import load_config
    from agent.detectconfig import DetectionConfig
    from agent.evaluate import evaluate_home, format_table

    detection = DetectionConfig()
    if args.config is not None:
        try:
            detection = load_config(args.config).detection
        except ConfigError as err:
            print(err, file=sys.stderr)
            return EXIT_BAD_INPUT
    results = []
    for trace in args.traces:
        try:
            results.append(
                evaluate_home(trace, detection, learn_days=args.learn_days, frontier=args.frontier)
            )
        except (TraceError, ValueError) as err:
            print(f"{trace}: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print(format_table(results))
    return EXIT_OK


# ---- the learned routine -----------------------------------------------------------------
def cmd_routine_show(args: argparse.Namespace) -> int:
    import json

    from agent.routineview import learn_from_trace, load_routine, render_text, settings, to_json
    from detection.routine import RoutineFileError

    if args.save is not None and args.trace is None:
        print("--save goes with --trace: it writes the routine learned there", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        detection, zone = settings(args.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if args.trace is not None:
            routine = learn_from_trace(args.trace, detection)
        else:
            routine = load_routine(args.file, detection, zone)
    except RoutineFileError as err:
        print(f"cannot read the routine: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (TraceError, ValueError) as err:
        print(f"cannot learn the routine: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.save is not None:
        try:
            routine.save(args.save)
        except OSError as err:
            print(f"cannot save the routine to {args.save}: {err}", file=sys.stderr)
            return EXIT_FAILED
    if args.json:
        print(json.dumps(to_json(routine), indent=2))
    else:
        print(render_text(routine))
    if args.save is not None:
        print(f"saved to {args.save}", file=sys.stderr)
    return EXIT_OK


def cmd_routine_plot(args: argparse.Namespace) -> int:
    from agent.routineview import PlotUnavailableError, plot_day, settings

    try:
        detection, _ = settings(args.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        out = plot_day(args.trace, args.day, args.out, detection)
    except PlotUnavailableError as err:
        print(err, file=sys.stderr)
        return EXIT_BAD_INPUT
    except (TraceError, ValueError) as err:
        print(f"cannot plot: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        print(f"cannot write {args.out}: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{out}: {args.day.isoformat()} drawn (sensor-level data: keep it local, never send it)")
    return EXIT_OK


# ---- the installer's walk-through -------------------------------------------------------
EXIT_INCOMPLETE = 3  # hub check --once: a sensor has not been seen, or the centre is not reached


def cmd_check(args: argparse.Namespace) -> int:
    from agent.check import CheckError, as_json, once, render, watch
    from agent.config import load_config

    if args.json and not args.once:
        print("hub check: --json goes with --once (the live view is for people)", file=sys.stderr)
        return EXIT_BAD_INPUT
    path: Path | None = args.socket
    if path is None:
        try:
            config = load_config(args.config)
        except ConfigError as err:
            print(err, file=sys.stderr)
            return EXIT_BAD_INPUT
        path = config.local.socket
        if path is None:
            print(
                f"{args.config}: [local] socket is not set, so the agent offers no live view; "
                'set it (e.g. socket = "/run/leefsamen-hub/hub.sock") and restart the agent',
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
    try:
        if not args.once:
            watch(path, args.fresh)
            return EXIT_OK  # pragma: no cover - watch ends only by an error or Ctrl-C
        snap, states = once(path, args.fresh)
    except CheckError as err:
        print(f"hub check: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    if args.json:
        print(json.dumps(as_json(snap, states), indent=2))
    else:
        from rich.console import Console

        Console().print(render(snap, states))
    complete = snap.get("uplink", {}).get("connected") and all(
        state.value != "waiting" for state in states.values()
    )
    return EXIT_OK if complete else EXIT_INCOMPLETE


# ---- the parser --------------------------------------------------------------------------
def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole ``hub`` command line; ``command``: the command asked for, when known, so
    that the parser is built without importing what another command needs."""
    parser = argparse.ArgumentParser(
        prog="hub", description="Leefsamen hub agent: alerts from the sensors of a home."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the agent with live drivers")
    p.add_argument("--config", type=Path, required=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "check",
        help="the installer's live view: every sensor, turning green as it is triggered",
        description="Watch the running agent's sensors live (through its [local] socket). "
        "With --once: print one snapshot and exit 0 when every sensor has been seen and the "
        f"centre is reached, {EXIT_INCOMPLETE} when not, {EXIT_FAILED} when the agent does "
        "not answer.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=Path,
        default=Path("/etc/leefsamen-hub/hub.toml"),
        help="the hub's configuration, for its [local] socket (default: %(default)s)",
    )
    where.add_argument("--socket", type=Path, help="the agent's local status socket")
    p.add_argument("--once", action="store_true", help="one snapshot, then exit")
    p.add_argument("--json", action="store_true", help="with --once: JSON for scripts")
    p.add_argument(
        "--fresh",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a trigger stays green (default: %(default)s)",
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("replay", help="run the agent on a recorded trace")
    p.add_argument("trace", type=Path)
    p.add_argument("--config", type=Path, help="hub configuration (default: memory uplink)")
    p.add_argument("--speed", type=_speed, default="max", help='"max" or N times real time')
    p.add_argument("--alerts-out", type=Path, help="also write every alert message here")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    c = csub.add_parser("check", help="validate a configuration file and list every problem")
    c.add_argument("file", type=Path)
    c.set_defaults(func=cmd_config_check)

    p = sub.add_parser("trace", help="trace tools")
    tsub = p.add_subparsers(dest="trace_command", required=True, metavar="COMMAND")
    t = tsub.add_parser("import", help="import a recorded home into trace format v1")
    t.add_argument("format", choices=["ordonez", "kasteren", "casas"])
    t.add_argument("sources", type=Path, nargs="+", help="the dataset folder or its files")
    t.add_argument("-o", "--output", type=Path, required=True)
    t.add_argument("--tz", type=_zone, required=True, help="the home's time zone")
    t.add_argument("--map", type=Path, help="CASAS only: sensor map (TOML)")
    t.set_defaults(func=cmd_trace_import)
    t = tsub.add_parser("info", help="days, sensors and events per day of a trace")
    t.add_argument("trace", type=Path)
    t.set_defaults(func=cmd_trace_info)

    p = sub.add_parser("simulate", help="generate a realistic home, optionally with incidents")
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=date.fromisoformat, default=date(2026, 11, 2))
    p.add_argument("--tz", type=_zone, default=ZoneInfo("Europe/Amsterdam"))
    p.add_argument("--profile", choices=["typical", "busy", "sparse"], default="typical")
    p.add_argument(
        "--incident",
        action="append",
        default=[],
        help="KIND@WHEN, e.g. fall@d13T15:00, no_wakeup@d10, bathroom_fall@2026-11-14T03:10",
    )
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "evaluate", help="time to detect an emergency and false alarms, on recorded homes"
    )
    p.add_argument("traces", type=Path, nargs="+", metavar="TRACE")
    p.add_argument("--config", type=Path, help="a hub configuration whose [detection] to use")
    p.add_argument("--learn-days", type=int, default=7)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--frontier",
        action="store_true",
        help="also search the margin a learned hour table needs for <= 0.05 false alarms a day",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("routine", help="what the hub has learned of a home's routine")
    rsub = p.add_subparsers(dest="routine_command", required=True, metavar="COMMAND")
    r = rsub.add_parser(
        "show",
        help="the learned routine: get-up, bedtime, bathroom, inactivity limits, activity",
        description="Show the routine the hub learns from a trace, or one saved to a file.",
    )
    source = r.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", type=Path, help="learn it by running the hub over a trace")
    source.add_argument("--file", type=Path, help="a saved routine (.npz)")
    r.add_argument(
        "--config",
        type=Path,
        help="a hub configuration: its [detection], and hub.timezone for --file "
        "(default Europe/Amsterdam)",
    )
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.add_argument("--save", type=Path, metavar="FILE", help="with --trace: write the routine")
    r.set_defaults(func=cmd_routine_show)
    r = rsub.add_parser(
        "plot",
        help="draw one day of a home (PNG) for developers; sensor-level data, keep it local",
        description="Draw one day of a recorded home: the events per room, the normal activity "
        "learned before that day, and the alerts raised that day. The picture shows "
        "sensor-level data: it is a local file for developers and must never be sent "
        "anywhere. Needs matplotlib: pip install 'leefsamen-hub[plot]'.",
    )
    r.add_argument("--trace", type=Path, required=True)
    r.add_argument("--day", type=date.fromisoformat, required=True, metavar="YYYY-MM-DD")
    r.add_argument("--out", type=Path, required=True, help="the PNG file to write")
    r.add_argument("--config", type=Path, help="a hub configuration whose [detection] to use")
    r.set_defaults(func=cmd_routine_plot)

    p = sub.add_parser("demo", help="a simulated fortnight with an incident, through a broker")
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--incident", action="append", default=None)
    p.add_argument("--workdir", type=Path, default=None)
    p.set_defaults(func=cmd_demo)

    # the commands for the people in the hallway and at the centre: each module adds its own
    # subcommand and keeps its imports to when it runs. When one of the commands above is
    # asked for, the modules are not even imported: `hub run` reaches READY about 70 ms
    # sooner and half a megabyte smaller without them (bench/footprint.py).
    if command is None or command not in sub.choices:
        from agent import doctor, hubstatus, provision

        for module in (provision, doctor, hubstatus):
            module.register(sub)
    return parser


def command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` asks for: its first word that is not an option (the top-level
    options take no value), or None (``hub``, ``hub --help``)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_in(words))
    args = parser.parse_args(words)
    level = logging.WARNING - 10 * args.verbose
    # Under systemd stderr is the journal: log to it with structure (agent/journal.py);
    # elsewhere the plain "LEVEL logger: message" lines. (No effect when logging is set up
    # already, as in a test.)
    from agent.journal import handler_for_stderr

    logging.basicConfig(level=level, handlers=[handler_for_stderr()])
    if args.verbose < 2:
        # bthome-ble warns on every advertisement it cannot decrypt: the driver counts
        # those and warns once per device instead (the journal lives on an SD card)
        logging.getLogger("bthome_ble").setLevel(logging.ERROR)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # `hub trace info x | head`: the reader left; end quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
