"""Imported by the agent's command line before anything imports asyncio: asyncio without ssl.

asyncio imports ssl when it is first imported, and ssl maps OpenSSL's libssl and libcrypto into
the process: 1.2 MB of the agent's resident memory (Debian bookworm) in an agent that never speaks
TLS (it sends UDP and reads the kernel).  asyncio is imported here with ssl hidden, then ssl is
importable again, so that a library that uses it (docker's HTTP client over TLS) loads it then.
What the agent gives up is asyncio's own TLS (``ssl=`` of ``create_connection``, ``start_tls``),
which none of it uses; a process that imported asyncio before is left as it is.
"""

import sys

if "asyncio" not in sys.modules and "ssl" not in sys.modules:
    sys.modules["ssl"] = None  # type: ignore[assignment]  # import ssl raises ImportError: asyncio does without
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]
