#!/usr/bin/env python3
"""A loopback SMTP server for bench/slow-domains.sh: accepts every message,
answering the end of DATA after SLOW seconds when a recipient is at one of the
slow domains and at once otherwise, and appends "<unix time> <recipient>" to
LOG for each accepted recipient. A recipient at one of the RETRY domains gets
"451" to its first RCPT (logged as "<unix time> <recipient> 451") and is
accepted after. Plain text, no AUTH, no PIPELINING.

Usage: slow_smtp.py PORT LOG SLOW_SECONDS DOMAIN[,DOMAIN...] [RETRY_DOMAIN,...]
"""
import asyncio
import sys
import time

PORT, LOG, SLOW, DOMAINS = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), set(sys.argv[4].split(","))
RETRY = set(sys.argv[5].split(",")) if len(sys.argv) > 5 else set()
refused_once = set()
log = open(LOG, "a", buffering=1)


def path_arg(rest):
    a, b = rest.find("<"), rest.find(">")
    return rest[a + 1:b] if 0 <= a < b else rest.strip()


def domain(addr):
    return addr.rsplit("@", 1)[-1].lower()


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
                rcpt = path_arg(cmd[8:])
                if domain(rcpt) in RETRY and rcpt not in refused_once:
                    refused_once.add(rcpt)
                    log.write(f"{time.time():.3f} {rcpt} 451\n")
                    writer.write(b"451 4.3.0 try again later\r\n")
                else:
                    rcpts.append(rcpt)
                    writer.write(b"250 2.1.5 ok\r\n")
            elif up == "DATA":
                if not rcpts:
                    writer.write(b"554 5.5.1 no valid recipients\r\n")
                    await writer.drain()
                    continue
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                while True:
                    body = await reader.readline()
                    if not body or body in (b".\r\n", b".\n"):
                        break
                if any(domain(r) in DOMAINS for r in rcpts):
                    await asyncio.sleep(SLOW)
                now = time.time()
                for r in rcpts:
                    log.write(f"{now:.3f} {r}\n")
                writer.write(b"250 2.0.0 queued\r\n")
            elif up in ("RSET", "NOOP"):
                rcpts = []
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
