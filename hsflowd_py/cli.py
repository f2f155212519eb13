"""``hsflowd-py``: the agent's command line, with the established agent's flags.

Its flags that mean something here: ``-d -p -f -o -u -m -P -v``, and ``-D``/``-L`` (log to a
file of at most N bytes, kept with one rotated copy).  ``-l`` (its module directory) is accepted
and ignored: this agent's modules are Python packages.  Additions: ``-s``, ``--status``,
``--check``, ``--skip-unsupported``, ``--machine-id-uuid``.
"""

from __future__ import annotations

from . import lean_imports  # noqa: F401  (first: asyncio without ssl, shutil without bz2 and lzma; see there)

# isort: split
import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from . import __version__, status
from .config import ConfigError, load_config
from .config.values import parse_uuid
from .malloc_tuning import tune_malloc
from .readers import ReaderError
from .readers.identity import DERIVATIONS, identify, parse_machine_id


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
    p.add_argument("-m", dest="machine_id", help="machine-id to derive the host UUID from (default /etc/machine-id)")
    p.add_argument(
        "--machine-id-uuid",
        choices=DERIVATIONS,
        default="hsflowd",
        help="how a UUID is derived from machine-id: as the established agent does (default) or by HMAC",
    )
    p.add_argument("-l", dest="modules_dir", help="accepted for the established agent's command lines; no effect")
    p.add_argument("-D", dest="logfile", help="log to this file (appended) instead of stderr or syslog")
    p.add_argument(
        "-L", dest="logbytes", type=_byte_count, default=0, help="rotate the -D file beyond this many bytes"
    )
    p.add_argument(
        "--skip-unsupported",
        action="store_true",
        help="skip config blocks and keys of modules hsflowd-py lacks, with a warning, instead of refusing the file",
    )
    p.add_argument("-v", dest="version", action="store_true", help="print the version and exit")
    p.add_argument("-P", dest="keep_root", action="store_true", help="keep running as root (do not drop privileges)")
    p.add_argument("-s", dest="status_socket", default=status.DEFAULT_PATH, help="status socket (default %(default)s)")
    p.add_argument("--status", action="store_true", help="print the running agent's counters and exit")
    p.add_argument("--check", action="store_true", help="parse and validate the config, print the effective settings")
    return p.parse_args(argv)


def _byte_count(text: str) -> int:
    """``-L``: bytes, as the established agent reads them (``strtol(…, 0)``)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def setup_logging(debug: int, logfile: str | None = None, logbytes: int = 0) -> None:
    level = logging.WARNING if debug == 0 else logging.INFO if debug == 1 else logging.DEBUG
    if logfile:
        from logging.handlers import RotatingFileHandler

        handler: logging.Handler = RotatingFileHandler(logfile, maxBytes=logbytes, backupCount=1 if logbytes else 0)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    elif debug or not os.path.exists("/dev/log"):
        handler = logging.StreamHandler(sys.stderr)
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
    tune_malloc()  # first: before the agent allocates much, and before it starts any thread
    args = parse_args(argv)
    if args.version:
        print(f"hsflowd-py {__version__}")
        return 0
    if args.status:
        import json

        try:
            print(json.dumps(status.query(args.status_socket), indent=2, sort_keys=True))
        except (OSError, ValueError) as e:
            print(f"hsflowd-py: no agent answers on {args.status_socket}: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        settings = load_config(args.config, args.skip_unsupported)
        given = parse_uuid(args.uuid) if args.uuid else None
    except ConfigError as e:
        print(f"hsflowd-py: {e}", file=sys.stderr)
        return 1
    except ValueError:
        print(f"hsflowd-py: -u {args.uuid}: not a UUID", file=sys.stderr)
        return 1
    try:
        machine_id = parse_machine_id(args.machine_id) if args.machine_id else None
    except ReaderError:
        print(f"hsflowd-py: -m {args.machine_id}: not a machine-id (32 hex digits)", file=sys.stderr)
        return 1
    host_uuid, uuid_source = identify(Path("/"), given or settings.uuid, machine_id, args.machine_id_uuid)
    if args.check:
        print("\n".join(settings.describe()))
        print(f"# host UUID: {host_uuid} (from {uuid_source})")
        return 0
    setup_logging(args.debug, args.logfile, args.logbytes)
    for warning in settings.warnings:
        logging.getLogger("hsflowd_py.config").warning("%s", warning)
    logging.getLogger("hsflowd_py.agent").info("host UUID %s (from %s)", host_uuid, uuid_source)
    if not args.debug:
        daemonize()
    from .agent import Agent

    agent = Agent(
        settings,
        config_path=args.config,
        auto_path=args.autofile,
        uuid_override=host_uuid.bytes,
        status_path=args.status_socket,
        keep_root=args.keep_root,
        skip_unsupported=args.skip_unsupported,
        pid_path=args.pidfile,
    )
    asyncio.run(agent.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
