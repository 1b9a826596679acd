#!/usr/bin/env python3
"""Writes a realistic contacts CSV for bench/import.sh.

Usage: gen_contacts.py ROWS OUT.csv [SEED]

Columns: email, first_name, last_name, locale, tags, country, plan, orders
(the last three become typed attributes). About 2% of the rows are invalid
(no @, a space in the address, an empty email, a dot-dot local part, a row
with a missing field) and about 1% repeat an earlier address (exactly, or with
the domain in another case, which normalises to the same address). Some
names carry accents and a few addresses an IDN domain, as real lists do.
Deterministic for a given seed, so runs compare.
"""

import csv
import random
import sys

FIRST = ["Ana", "Bruno", "Chloé", "Dmitri", "Elif", "François", "Grace", "Hiro", "Inés",
         "João", "Karin", "Luis", "María", "Nils", "Olga", "Pedro", "Quentin", "Rosa",
         "Søren", "Tomás", "Uma", "Vera", "Wei", "Ximena", "Yusuf", "Zoë", ""]
LAST = ["García", "Silva", "Martin", "Ivanov", "Yılmaz", "Dubois", "Smith", "Tanaka",
        "Fernández", "Santos", "Berg", "Pérez", "Müller", "Novak", "Rossi", "Kowalski",
        "Jensen", "O'Brien", "Nguyen", ""]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com", "shop.example",
           "correo.example.es", "post.example.de", "müller.example", "example.co.uk"]
LOCALES = ["en", "es", "fr", "de", "pt", "it", "nl", "en-GB", "es-MX", ""]
TAGS = ["vip", "early", "wholesale", "newsletter", "b2b", "returning", "beta"]
COUNTRIES = ["ES", "PT", "FR", "DE", "GB", "US", "MX", "IT", "NL", "SE"]
PLANS = ["free", "pro", "team", "enterprise"]


def main() -> None:
    rows = int(sys.argv[1])
    out = sys.argv[2]
    rnd = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 2026)
    seen = []
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["email", "first_name", "last_name", "locale", "tags",
                    "country", "plan", "orders"])
        for i in range(rows):
            first = rnd.choice(FIRST)
            last = rnd.choice(LAST)
            local = f"{(first or 'user').lower()}.{(last or 'x').lower()}{i}"
            local = local.encode("ascii", "ignore").decode().replace("'", "")
            domain = rnd.choice(DOMAINS)
            email = f"{local}@{domain}"
            r = rnd.random()
            if r < 0.004:
                email = email.replace("@", "")  # no @
            elif r < 0.008:
                email = email.replace("@", " @")  # space
            elif r < 0.012:
                email = ""
            elif r < 0.016:
                email = f"{local}..x@{domain}"  # dot-dot
            elif r < 0.020:
                pass  # a short row, cut below
            elif r < 0.030 and seen:
                prev = rnd.choice(seen)
                # The same address again, sometimes with the domain upper-cased.
                email = prev if rnd.random() < 0.5 else prev.split("@")[0] + "@" + prev.split("@")[1].upper()
            elif len(seen) < 100_000 or rnd.random() < 0.01:
                seen.append(email)
            tags = ",".join(sorted(rnd.sample(TAGS, rnd.choice([0, 0, 1, 1, 2, 3]))))
            row = [email, first, last, rnd.choice(LOCALES), tags,
                   rnd.choice(COUNTRIES), rnd.choice(PLANS), str(int(rnd.expovariate(0.2)))]
            if 0.016 <= r < 0.020:
                row = row[:-1]  # a short row: one field missing
            w.writerow(row)


if __name__ == "__main__":
    main()
