"""`python -m bench.smtp_sink --port P [--delay S]`: an SMTP server that accepts everything.

Used by the benchmarks as a separate process, so its work does not share the
load generator's interpreter. It speaks just enough SMTP (EHLO, MAIL, RCPT,
DATA, RSET, NOOP, QUIT) on a bare asyncio protocol: a full server such as
aiosmtpd spends several milliseconds of CPU a message, and a sink that is
the slowest part would measure itself rather than its clients. The delay is
a wait before each 250, as a remote server's processing would be.
"""

import argparse
import asyncio
import signal


class _Session(asyncio.Protocol):
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self.buffer = self.buffer[end + 5 :]
                self.in_data = False
                asyncio.get_running_loop().call_later(self.delay, self._reply, b"250 queued")
                continue
            line, found, rest = self.buffer.partition(b"\r\n")
            if not found:
                return
            self.buffer = rest
            self._command(line[:4].upper())

    def _command(self, verb: bytes) -> None:
        if verb == b"EHLO":
            self._reply(b"250-sink\r\n250-8BITMIME\r\n250 PIPELINING")
        elif verb == b"DATA":
            self.in_data = True
            self._reply(b"354 end with <CRLF>.<CRLF>")
        elif verb == b"QUIT":
            self._reply(b"221 bye")
            if self.transport is not None:
                self.transport.close()
        else:  # HELO, MAIL, RCPT, RSET, NOOP
            self._reply(b"250 OK")

    def _reply(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply + b"\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Session(delay), "127.0.0.1", port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each 250")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.delay))


if __name__ == "__main__":
    main()
