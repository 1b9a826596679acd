#!/usr/bin/env python3
"""Crafted hostile bounces for bench/bounce-hostile.sh (issue 15 item 2).

Usage: bounce_hostile_gen.py SHAPE SIZE OUT
  dsn-rcpts   a multipart/report naming SIZE recipients, each in the prose
              part and in its own delivery-status group
  prose-rcpts an Exim-style notice (no DSN part) naming SIZE recipients
  dsn-bytes   a one-recipient DSN padded to SIZE bytes: prose lines that all
              mention the recipient, then a returned message of the rest
  at-storm    SIZE bytes of address-like tokens in a notice ("a1@b.example ")
"""
import sys

shape, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
HEAD = (
    "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\n"
    "To: bounces+tok@sender.example\n"
    "Subject: Undelivered Mail Returned to Sender\n"
    "Message-Id: <hostile@mx.example.org>\n"
    "MIME-Version: 1.0\n"
)
with open(out, "w") as f:
    if shape == "dsn-rcpts":
        f.write(HEAD + 'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n')
        f.write("--B\nContent-Type: text/plain\n\n")
        for i in range(size):
            f.write(f"<user{i}@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1\n"
                    f"    <user{i}@example.org>: Recipient address rejected: User unknown\n"
                    "    (in reply to RCPT TO command)\n\n")
        f.write("--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n")
        for i in range(size):
            f.write(f"Final-Recipient: rfc822; user{i}@example.org\nAction: failed\nStatus: 5.1.1\n"
                    f"Diagnostic-Code: smtp; 550 5.1.1 <user{i}@example.org>: User unknown\n\n")
        f.write("--B\nContent-Type: text/rfc822-headers\n\nFrom: news@sender.example\nSubject: hi\n\n--B--\n")
    elif shape == "prose-rcpts":
        f.write(HEAD.replace("Undelivered Mail Returned to Sender", "Mail delivery failed"))
        f.write("\nThis message was created automatically by mail delivery software.\n\n"
                "A message that you sent could not be delivered to one or more of its\n"
                "recipients. This is a permanent error. The following address(es) failed:\n\n")
        for i in range(size):
            f.write(f"  user{i}@example.org\n    SMTP error from remote mail server after RCPT TO:<user{i}@example.org>:\n"
                    "    550 5.1.1 User unknown\n\n")
    elif shape == "dsn-bytes":
        f.write(HEAD + 'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n')
        f.write("--B\nContent-Type: text/plain\n\n")
        line = "<gone@example.org>: host mx.example.org said: 550 5.1.1 User unknown, gone@example.org\n"
        prose = size // 2
        f.write(line * (prose // len(line)))
        f.write("\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
                "Final-Recipient: rfc822; gone@example.org\nAction: failed\nStatus: 5.1.1\n"
                "Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: User unknown\n\n")
        f.write("--B\nContent-Type: message/rfc822\n\nFrom: news@sender.example\nTo: gone@example.org\nSubject: hi\n\n")
        body = "All work and no play makes Jack a dull boy, to gone@example.org.\n"
        f.write(body * ((size - prose) // len(body)))
        f.write("--B--\n")
    elif shape == "at-storm":
        f.write(HEAD + "\nYour message could not be delivered.\n\n")
        n = 0
        written = 0
        while written < size:
            t = f"a{n}@b{n}.example "
            f.write(t)
            written += len(t)
            n += 1
            if n % 8 == 0:
                f.write("\n")
    else:
        sys.exit(f"unknown shape {shape}")
