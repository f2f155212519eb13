"""Imported first by the agent's command line: standard modules without optional parts the agent never uses.

* asyncio without ssl: asyncio imports ssl when it is first imported, and ssl maps OpenSSL's
  libssl and libcrypto into the process, 1.2 MB of the agent's resident memory (Debian bookworm)
  in an agent that never speaks TLS (it sends UDP and reads the kernel).  What the agent gives up
  is asyncio's own TLS (``ssl=`` of ``create_connection``, ``start_tls``), which none of it uses.
* shutil without bz2 and lzma: argparse imports shutil (for the terminal's width), and shutil
  imports both compressors for its archive formats: their modules, libbz2 and liblzma, 0.33 MB.
  The agent makes no archive; its shutil offers the gztar, tar and zip formats only.

Each hidden module is importable again afterwards, for a library that uses it (docker's HTTP
client loads ssl for TLS, tarfile loads bz2 for such an archive).  A process that imported one
of these modules before is left as it is.
"""

import sys


def _import_without(name: str, hidden: tuple[str, ...]) -> None:
    """Import ``name`` while ``import`` of each of ``hidden`` raises ImportError (it does without)."""
    if name in sys.modules or any(module in sys.modules for module in hidden):
        return
    for module in hidden:
        sys.modules[module] = None  # type: ignore[assignment]
    try:
        __import__(name)
    finally:
        for module in hidden:
            del sys.modules[module]


_import_without("asyncio", ("ssl",))
_import_without("shutil", ("bz2", "lzma"))
