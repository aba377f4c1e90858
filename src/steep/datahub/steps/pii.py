"""``pii``: e-mail addresses and public IP addresses replaced by placeholders.

A dotted quad is often not an address: section numbers ("Section 6.2.4.1 and 6.2.4.3"),
outline headings and version strings have the same shape. ``numbering_starts`` decides
which is which from the words and numbers around it; ``Pii``'s docstring states the rule.
"""

from __future__ import annotations

import ipaddress
import re
from typing import ClassVar

from steep.datahub.steps.base import Doc, DocStep, Edit, StepResult, register
from steep.datahub.steps.text import _replace_text

# Starts only at the beginning of a run of local-part characters, so a long run without
# "@" is scanned once, not once per start position.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
# Four dotted numbers, not part of a longer dotted/word sequence ("1.2.3.4.5", "v1.2.3.4").
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\w)")
# Hex groups with 2+ colons, validated by ``ipaddress`` afterwards ("12:30:45" is not one).
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# Global unicast space; other "valid" IPv6 strings are mostly code ("dead::beef", "a::b").
_IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
# Names reserved for examples and tests (RFC 2606, RFC 6761): placeholders, not people.
_EXAMPLE_DOMAIN = re.compile(
    r"(?:^|\.)(?:example\.(?:com|net|org)|[^.]+\.(?:example|test|invalid|localhost))$",
    re.IGNORECASE,
)

# ---------------------------------------------------------------- numbering or address


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# How far back on its line a dotted quad's words are read.
_BEFORE_CHARS = 48
# A port or prefix length after it: an address whatever else ("172.16.254.1:8080", "/24").
_ADDRESS_AFTER = re.compile(r":\d{1,5}(?!\d)|/\d{1,2}(?![\d.])")
# Words that name an address, read right before it ("IP 10.1.2.3", "nameserver 8.8.8.8"),
# also across a joining word or a command's flags ("server at ...", "ping -c 3 ...").
_ADDRESS_WORDS = _words(
    "ip ips ipv4 addr address addresses host hosts hostname server servers nameserver "
    "nameservers dns resolver resolvers gateway gateways router routers proxy proxies peer "
    "peers client clients inet ping ssh telnet traceroute tracert nslookup dig curl wget "
    "connect connects connected connecting listen listens listening bind"
)
_JOINING = _words("is was at to on of as via = :")
# Words that name a number, read right before it: "Section 6.2.4.1", "version 2.4.1.0".
_NUMBERING_WORDS = _words(
    "section sections sec. secs. sect. chapter chapters chap. ch. part parts clause "
    "clauses article articles art. arts. item items step steps figure figures fig. figs. "
    "table tables tab. appendix appendices annex annexes rule rules paragraph paragraphs "
    "para. paras. requirement requirements req. version versions ver. vers. release "
    "releases build builds revision revisions rev. § §§ ¶"
)
# Standards whose name and number come right before a clause: "RFC 5280, 4.2.1.3",
# "IEC 61508-3, 7.4.2.12", "DO-178C 6.4.4.2", "ISO/IEC 27001:2013, 9.2.3.1".
_STANDARDS = _words("RFC ISO IEC IEEE EN DIN BS ANSI ASTM NIST DO ETSI")
# A product name: a word with a capital ("Python", "NumPy", "iOS").
_NAME = re.compile(r"[A-Za-z][\w+#]*")
_PINS = ("==", ">=", "<=", "~=", "!=", "^", "~")
# Any dotted number, and what joins the items of a list of them: "6.2.4.1 and 6.2.4.3",
# "4.1.2.3, 4.1.2.4", "6.2.4.1-6.2.4.3", "3.2.1.4 to 3.2.1.7". A bare comma is not a list
# joint (CSV: "0.5,81.2.69.160").
_DOTTED = re.compile(r"(?<![\w.])\d+(?:\.\d+)+(?!\w|\.\w)")
_LIST_GAP = re.compile(
    r"\s*,\s+(?:(?:and|or)\s+)?|\s+(?:and|or|to|through|thru|&)\s+|\s*[-–—]\s*", re.IGNORECASE
)


def _before(text: str, start: int) -> str:
    window = max(0, start - _BEFORE_CHARS)  # a bounded look back: long lines stay linear
    return text[text.rfind("\n", window, start) + 1 or window : start]


def _names_an_address(words: list[str]) -> bool:
    """The last word, past at most one joining word and a command's flags, names one."""
    for word in reversed(words[-5:]):
        word = word.lower().strip("(:=")
        if word in _ADDRESS_WORDS:
            return True
        if word and word not in _JOINING and not word.startswith("-") and not word.isdigit():
            return False
    return False


def _names_a_standard(words: list[str]) -> bool:
    """``RFC 5280,`` / ``IEC 61508-3,`` / ``DO-178C`` right before it."""
    if not words or not any(c.isdigit() for c in words[-1]):
        return False
    names = [words[-1].split("-")[0]] + (words[-2].split("/") if len(words) > 1 else [])
    return any(name in _STANDARDS for name in names)


def _said_beside(text: str, start: int, end: int) -> bool | None:
    """True: the words beside it say numbering; False: they say address; None: they don't."""
    before = _before(text, start)
    if _ADDRESS_AFTER.match(text, end) or before.endswith(("//", "@")):
        return False
    words = before.split()
    last = words[-1].lower() if words else ""
    if last in _NUMBERING_WORDS or last.endswith("§") or _names_a_standard(words):
        return True
    if _names_an_address(words):
        return False
    return None


def _lists(text: str) -> list[list[tuple[int, int]]]:
    """The (start, end) of the dotted numbers of every list of two or more."""
    out: list[list[tuple[int, int]]] = []
    run: list[tuple[int, int]] = []
    for m in _DOTTED.finditer(text):
        if run and _LIST_GAP.fullmatch(text, run[-1][1], m.start()):
            run.append(m.span())
            continue
        if len(run) > 1:
            out.append(run)
        run = [m.span()]
    if len(run) > 1:
        out.append(run)
    return out


def _reads_as_numbering(text: str, start: int, end: int) -> bool:
    """With nothing said beside it: a heading, an outline number or a version."""
    before = _before(text, start)
    if not before.strip() and text[end : end + 1] in (".", ")"):
        return True  # "6.2.4.1. Configuring the resolver", "4.1.2.3) Timers"
    parts = [int(p) for p in text[start:end].split(".")]
    if all(p < 10 for p in parts):
        return True
    if before.rstrip().endswith(_PINS):
        return True
    words = before.split()
    named = bool(words) and before.endswith(" ") and bool(_NAME.fullmatch(words[-1]))
    versionish = parts[0] < 10 and all(p < 20 for p in parts)
    return versionish and named and words[-1].lower() != words[-1]


def _outline_head(number: str) -> str | None:
    """The first part of a dotted number that cannot be an address and reads as an outline
    number (3 or 5+ parts of 1-3 digits, no leading zero: not a date like 01.12.2024)."""
    parts = number.split(".")
    if len(parts) == 4 or any(len(p) > 3 or (p[0] == "0" and p != "0") for p in parts):
        return None
    return parts[0]


def numbering_starts(text: str, spans: list[tuple[int, int]]) -> set[int]:
    """The starts of the address-shaped ``spans`` of ``text`` that are numbering there."""
    said = {start: _said_beside(text, start, end) for start, end in spans}
    for items in _lists(text):
        head = ""
        verdict = None
        for s, e in items:
            verdict = said[s] if s in said else _said_beside(text, s, e)
            if verdict is not None:
                head = text[s:e].split(".")[0]
                break
        # "see 12.3.1 and 12.3.4.1": a sibling that cannot be an address
        outline = {_outline_head(text[s:e]) for s, e in items} - {None}
        for s, e in items:
            if said.get(s, False) is not None:
                continue
            first = text[s:e].split(".")[0]
            if verdict is False:
                said[s] = False  # "IP 10.1.2.3 and 10.1.2.4"
            elif (verdict and first == head) or first in outline:
                said[s] = True  # "Section 6.2.4.1 and 6.2.4.3"
    return {
        start
        for start, end in spans
        if said[start] or (said[start] is None and _reads_as_numbering(text, start, end))
    }


def _email_ok(m: re.Match[str]) -> bool:
    """An address at a domain reserved for examples (user@example.com) is a placeholder."""
    return not _EXAMPLE_DOMAIN.search(m.group().rpartition("@")[2])


@register
class Pii(DocStep):
    """Replace e-mail addresses and public IP addresses with placeholders.

    A model trained on them can recite them. Private, loopback, reserved, documentation
    and multicast addresses (192.168.0.1, 127.0.0.1, 203.0.113.7, 224.0.0.251) are not
    personal data and are common in technical text, so they stay unless
    ``only_public_ips`` is False; so do addresses at domains reserved for examples
    (``you@example.com``, ``*.test``). Candidates are validated with the stdlib
    ``ipaddress``, so "999.1.1.1" and "3.11.7" are left alone.

    A dotted quad is numbering, not an address, by what stands beside it, in this order:

    1. an address: a port or prefix length after it (``:8080``, ``/24``), ``//`` or ``@``
       before it;
    2. numbering: a numbering word right before it (Section, §, Chapter, Clause, Article,
       Table, Figure, Appendix, Rule, Requirement, version, release, build, ...) or a
       standard and its number ("RFC 5280, 4.2.1.3", "IEC 61508-3, 7.4.2.12");
    3. an address: an address word right before it (IP, address, host, server, DNS,
       nameserver, gateway, ping, ssh, ..., also "server at", "IP is");
    4. an item of a list ("A and B", "A, B", "A-B", "A to B") takes what 1-3 say of the
       list's first item they speak of ("Section 6.2.4.1 and 6.2.4.3" is numbering, "IP
       10.1.2.3 and 10.1.2.4" two addresses); with nothing said, a sibling that cannot be
       an address ("12.3.1 and 12.3.4.1": 3 or 5+ parts, same first part) makes it
       numbering;
    5. otherwise numbering when it opens a line as a heading ("6.2.4.1. Title"), when
       every part is below 10 (an outline number: "see 3.2.1.4"; the few addresses of that
       shape are public resolvers like 1.1.1.1 and 8.8.8.8, masked where a word names them
       as one), or when it looks like a version (first part below 10, every part below
       20) after a product name or a pin ("Python 3.11.7.1", "pkg==1.2.3.4");
    6. else an address.
    """

    kind: ClassVar[str] = "pii"

    emails: bool = True
    ips: bool = True
    only_public_ips: bool = True
    email_placeholder: str = "<EMAIL>"
    ip_placeholder: str = "<IP>"

    def _ip_ok(self, candidate: str) -> bool:
        try:
            ip = ipaddress.ip_address(candidate)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip not in _IPV6_GLOBAL_UNICAST:
            return False
        # multicast groups (224.0.0.251 is mDNS) name no host, and Python counts them global
        return (ip.is_global and not ip.is_multicast) or not self.only_public_ips

    def _mask_ips(self, text: str) -> tuple[str, int]:
        """``text`` with its addresses replaced, and how many."""
        count = 0

        def sub(m: re.Match[str]) -> str:
            nonlocal count
            if m.start() not in masked:
                return m.group()
            count += 1
            return self.ip_placeholder

        if "." in text:
            spans = [m.span() for m in _IPV4.finditer(text) if self._ip_ok(m.group())]
            if spans:
                masked = {s for s, _ in spans} - numbering_starts(text, spans)
                text = _IPV4.sub(sub, text)
        if "::" in text or text.count(":") >= 7:
            masked = {m.start() for m in _IPV6.finditer(text) if self._ip_ok(m.group())}
            if masked:
                text = _IPV6.sub(sub, text)
        return text, count

    def apply(self, doc: Doc) -> StepResult:
        text = doc.text
        n_email = n_ip = 0
        if self.emails and "@" in text:
            found = 0

            def sub_email(m: re.Match[str]) -> str:
                nonlocal found
                if not _email_ok(m):
                    return m.group()
                found += 1
                return self.email_placeholder

            text = _EMAIL.sub(sub_email, text)
            n_email = found
        if self.ips:
            text, n_ip = self._mask_ips(text)
        if not n_email and not n_ip:
            return doc
        reason = "pii.email+ip" if n_email and n_ip else "pii.email" if n_email else "pii.ip"
        return Edit(_replace_text(doc, text), reason, f"{n_email} emails, {n_ip} ips")
