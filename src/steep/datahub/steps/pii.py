"""``pii``: e-mail addresses and public IP addresses replaced by placeholders."""

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
# Dotted numbering, not an address: "Section 6.2.4.3", "§ 1.2.3.4", and a heading or a
# table-of-contents line that starts "6.2.4.1." or "6.2.4.1)".
_NUMBERING_WORD = re.compile(
    r"(?:section|sect\.|sec\.|§|chapter|ch\.|part|clause|article|art\.|item|step|figure|"
    r"fig\.|table|appendix|rule|paragraph|para\.)\s*$",
    re.IGNORECASE,
)
# Names reserved for examples and tests (RFC 2606, RFC 6761): placeholders, not people.
_EXAMPLE_DOMAIN = re.compile(
    r"(?:^|\.)(?:example\.(?:com|net|org)|[^.]+\.(?:example|test|invalid|localhost))$",
    re.IGNORECASE,
)


def _is_numbering(text: str, m: re.Match[str]) -> bool:
    """A dotted number that is a section or outline number where it stands."""
    line_start = text.rfind("\n", 0, m.start()) + 1
    before = text[line_start : m.start()]
    if _NUMBERING_WORD.search(before):
        return True
    return not before.strip() and text[m.end() : m.end() + 1] in (".", ")")


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
    ``ipaddress``, so "999.1.1.1" and version numbers like "3.11.7" are left alone, and a
    dotted number after "Section" (or "§", "chapter", ...) or opening a numbered heading
    ("6.2.4.1. Title") is numbering, not an address.
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
            count = 0

            def sub_ip(m: re.Match[str]) -> str:
                nonlocal count
                if self._ip_ok(m.group()) and not _is_numbering(m.string, m):
                    count += 1
                    return self.ip_placeholder
                return m.group()

            if "." in text:
                text = _IPV4.sub(sub_ip, text)
            if "::" in text or text.count(":") >= 7:
                text = _IPV6.sub(sub_ip, text)
            n_ip = count

        if not n_email and not n_ip:
            return doc
        reason = "pii.email+ip" if n_email and n_ip else "pii.email" if n_email else "pii.ip"
        return Edit(_replace_text(doc, text), reason, f"{n_email} emails, {n_ip} ips")
