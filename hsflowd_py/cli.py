"""``hsflowd-py``: the agent's command line, with the established agent's flags."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid

from . import __version__, status
from .config import ConfigError, load_config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hsflowd-py", description="Host sFlow agent")
    p.add_argument("-f", dest="config", default="/etc/hsflowd.conf", help="config file (default %(default)s)")
    p.add_argument(
        "-d", dest="debug", action="count", default=0, help="stay in the foreground, log to stderr; repeat for more"
    )
    p.add_argument("-p", dest="pidfile", help="write the process id to this file")
    p.add_argument(
        "-o", dest="autofile", default="/etc/hsflowd.auto", help="effective settings file (default %(default)s)"
    )
    p.add_argument("-u", dest="uuid", help="host UUID (overrides the config and the machine's)")
    p.add_argument("-v", dest="version", action="store_true", help="print the version and exit")
    p.add_argument("-P", dest="keep_root", action="store_true", help="keep running as root (do not drop privileges)")
    p.add_argument("-s", dest="status_socket", default=status.DEFAULT_PATH, help="status socket (default %(default)s)")
    p.add_argument("--status", action="store_true", help="print the running agent's counters and exit")
    p.add_argument("--check", action="store_true", help="parse and validate the config, print the effective settings")
    return p.parse_args(argv)


def setup_logging(debug: int) -> None:
    level = logging.WARNING if debug == 0 else logging.INFO if debug == 1 else logging.DEBUG
    if debug or not os.path.exists("/dev/log"):
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    else:
        from logging.handlers import SysLogHandler

        handler = SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter("hsflowd-py[%(process)d]: %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def daemonize() -> None:
    """Detach from the terminal like the established agent does without -d."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.version:
        print(f"hsflowd-py {__version__}")
        return 0
    if args.status:
        try:
            print(json.dumps(status.query(args.status_socket), indent=2, sort_keys=True))
        except (OSError, ValueError) as e:
            print(f"hsflowd-py: no agent answers on {args.status_socket}: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        settings = load_config(args.config)
        host_uuid = uuid.UUID(args.uuid).bytes if args.uuid else None
    except ConfigError as e:
        print(f"hsflowd-py: {e}", file=sys.stderr)
        return 1
    except ValueError:
        print(f"hsflowd-py: -u {args.uuid}: not a UUID", file=sys.stderr)
        return 1
    if args.check:
        print("\n".join(settings.describe()))
        return 0
    setup_logging(args.debug)
    if not args.debug:
        daemonize()
    from .agent import Agent

    agent = Agent(
        settings,
        config_path=args.config,
        auto_path=args.autofile,
        uuid_override=host_uuid,
        status_path=args.status_socket,
        keep_root=args.keep_root,
        pid_path=args.pidfile,
    )
    asyncio.run(agent.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
