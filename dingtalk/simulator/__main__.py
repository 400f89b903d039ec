"""``python -m dingtalk.simulator --port 8900 [--host 127.0.0.1] [--limits on|off] ...``"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from dingtalk.simulator.config import Limits, SimulatorConfig, extra_apps
from dingtalk.simulator.server import serve_forever
from dingtalk.simulator.simulator import Simulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dingtalk.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--limits", choices=("on", "off"), default="on")
    parser.add_argument(
        "--dedupe",
        choices=("on", "off"),
        default="on",
        help="DingTalk's same-content-once-a-day rule (143106); off shows every duplicate",
    )
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="simulated seconds per real second"
    )
    parser.add_argument("--directory-size", type=int, default=2000, help="users per app")
    parser.add_argument("--directory-seed", type=int, default=852)
    parser.add_argument(
        "--directory-file", default=None, help="JSON seed file with extra departments/users"
    )
    parser.add_argument(
        "--callback-url",
        action="extend",
        nargs="+",
        default=[],
        metavar="[APP_KEY=]URL",
        help="event-push URL for every app, or for one app with APP_KEY=URL",
    )
    parser.add_argument("--no-record", action="store_true", help="do not keep recorded requests")
    parser.add_argument("--never-read-share", type=float, default=None)
    parser.add_argument(
        "--extra-apps", type=int, default=0, help="more standard apps (codes S01...) for benches"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    config = SimulatorConfig(
        limits=Limits(enabled=args.limits == "on", same_content_once_per_day=args.dedupe == "on"),
        time_scale=args.time_scale,
        directory_size=args.directory_size,
        directory_seed=args.directory_seed,
        directory_file=args.directory_file,
        record_requests=not args.no_record,
    )
    if args.extra_apps:
        config.apps = [*config.apps, *extra_apps(args.extra_apps)]
    if args.never_read_share is not None:
        config.readers.never_read_share = args.never_read_share
    for item in args.callback_url:
        key, sep, url = item.partition("=")
        if sep and not key.startswith(("http://", "https://")):
            targets = [app for app in config.apps if app.app_key == key]
            if not targets:
                raise SystemExit(f"unknown app key in --callback-url: {key}")
        else:
            targets, url = config.apps, item
        for app in targets:
            app.callback_url = url
    return config


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sim = Simulator(config_from_args(args))
    # The server only accumulates long-lived state (tasks, inboxes); frequent cyclic-GC
    # passes over it cost more than they free, so collect less often.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    sys.stderr.write(
        f"DingTalk simulator on http://{args.host}:{args.port} (phones: /_sim/phones)\n"
    )
    serve_forever(sim, args.host, args.port)


if __name__ == "__main__":
    main()
