"""`python -m bench.smtp_sink --port P [--delay S]`: an SMTP server that accepts everything.

Used by the benchmarks as a separate process, so its work does not share the
load generator's interpreter.
"""

import argparse
import asyncio
import signal

from tests.support.smtp import SMTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each 250")
    args = parser.parse_args()
    server = SMTPServer(port=args.port).start()
    server.set_delay(args.delay)
    try:
        asyncio.run(_wait_for_signal())
    finally:
        server.stop()


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


if __name__ == "__main__":
    main()
