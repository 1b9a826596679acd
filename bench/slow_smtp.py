#!/usr/bin/env python3
"""A loopback SMTP server for bench/slow-domains.sh: accepts every message,
answering the end of DATA after SLOW seconds when a recipient is at one of the
slow domains and at once otherwise, and appends "<unix time> <recipient>" to
LOG for each accepted recipient. Plain text, no AUTH, no PIPELINING.

Usage: slow_smtp.py PORT LOG SLOW_SECONDS DOMAIN[,DOMAIN...]
"""
import asyncio
import sys
import time

PORT, LOG, SLOW, DOMAINS = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), set(sys.argv[4].split(","))
log = open(LOG, "a", buffering=1)


def path_arg(rest):
    a, b = rest.find("<"), rest.find(">")
    return rest[a + 1:b] if 0 <= a < b else rest.strip()


async def session(reader, writer):
    writer.write(b"220 slow.test ESMTP bench\r\n")
    rcpts = []
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            up = cmd.upper()
            if up.startswith("EHLO"):
                writer.write(b"250-slow.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif up.startswith("HELO"):
                writer.write(b"250 slow.test\r\n")
            elif up.startswith("MAIL FROM:"):
                rcpts = []
                writer.write(b"250 2.1.0 ok\r\n")
            elif up.startswith("RCPT TO:"):
                rcpts.append(path_arg(cmd[8:]))
                writer.write(b"250 2.1.5 ok\r\n")
            elif up == "DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                while True:
                    body = await reader.readline()
                    if not body or body in (b".\r\n", b".\n"):
                        break
                if any(r.rsplit("@", 1)[-1].lower() in DOMAINS for r in rcpts):
                    await asyncio.sleep(SLOW)
                now = time.time()
                for r in rcpts:
                    log.write(f"{now:.3f} {r}\n")
                writer.write(b"250 2.0.0 queued\r\n")
            elif up in ("RSET", "NOOP"):
                writer.write(b"250 2.0.0 ok\r\n")
            elif up == "QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"502 5.5.2 not implemented\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(session, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()


asyncio.run(main())
