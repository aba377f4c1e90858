"""Document-level steps: each rule on hand-made documents that must pass and must fail."""

from __future__ import annotations

import collections
import itertools
import random
import re

import pytest
from pydantic import ValidationError

from steep.datahub.steps import filters
from steep.datahub.steps.base import STEP_TYPES, Doc, Drop, Edit
from steep.datahub.steps.filters import C4, FineWeb, GopherQuality, GopherRepetition, Normalize, Pii
from steep.datahub.steps.gopher import _dup_ngram_chars, _NGrams, _stop_words, _top_ngram_chars
from steep.datahub.steps.minhash import minhash_words
from steep.datahub.steps.text import (
    _NON_ALPHA_WORD,
    _WORD,
    _ends_sentence,
    count_non_alpha,
    words_of,
)

EN = (
    "The history of the printing press is closely tied to the spread of literacy in Europe. "
    "Before movable type, books were copied by hand, which made them rare and expensive. "
    "Johannes Gutenberg combined several existing technologies into a practical system "
    "around 1450. Within a few decades, printers were working in more than two hundred "
    "cities across the continent. The flood of pamphlets, bibles and scientific treatises "
    "changed how ideas travelled, and it helped scholars compare texts with a precision "
    "that had never been possible before."
)
EN_LINES = EN.replace(". ", ".\n")  # one sentence per line, as web text often is

DE = (
    "Die Stadt liegt am Ufer eines breiten Flusses und ist seit dem Mittelalter ein "
    "wichtiger Handelsplatz. Im Zentrum stehen noch viele alte Häuser, die nach dem großen "
    "Brand sorgfältig wieder aufgebaut wurden. Jedes Jahr kommen zahlreiche Besucher, um den "
    "Dom zu besichtigen und über den Markt zu schlendern. Wer sich für Geschichte "
    "interessiert, findet im städtischen Museum eine umfangreiche Sammlung von Urkunden, "
    "Münzen und Werkzeugen aus vergangenen Jahrhunderten."
)

VI = (
    "Hà Nội là thủ đô của Việt Nam và là một trong những thành phố có lịch sử lâu đời nhất "
    "ở khu vực Đông Nam Á. Thành phố nằm bên bờ sông Hồng, nổi tiếng với nhiều hồ nước, "
    "những con phố cổ và các món ăn truyền thống. Mỗi năm, hàng triệu du khách trong nước "
    "và quốc tế đến đây để tham quan các di tích, thưởng thức phở và tìm hiểu văn hóa của "
    "người dân địa phương."
)

# English-looking keyword spam: real words, no function words at all.
SPAM = (
    "cheap flights hotels rental cars vacation packages discount cruises travel deals "
    "luxury resorts beach holidays ski trips city breaks airport parking insurance "
    "quotes compare prices booking online offers weekend getaways family adventures "
    "honeymoon destinations tropical islands mountain cabins camping gear backpacks "
    "luggage sets passport covers currency exchange rates flight tracker hotel reviews "
    "restaurant guides museum tickets theme parks"
)


def doc(text: str, **meta: object) -> Doc:
    return Doc("t:1", text, dict(meta))


def made_up_words(k: int, start: int = 0) -> list[str]:
    """Distinct pronounceable words (no repeats), so repetition comes only from the test."""
    syl = [c + v for c, v in itertools.product("bdfgklmnprstvz", "aeiou")]
    out = [a + b + c for a, b, c in itertools.product(syl, syl, syl)]
    return out[start : start + k]


def dropped(result: object, reason: str) -> Drop:
    assert isinstance(result, Drop), result
    assert result.reason == reason, result
    return result


# ---------------------------------------------------------------- registry and params


def test_import_registers_all_kinds() -> None:
    expected = {
        "normalize": Normalize,
        "gopher_quality": GopherQuality,
        "gopher_repetition": GopherRepetition,
        "c4": C4,
        "fineweb": FineWeb,
        "pii": Pii,
    }
    for kind, cls in expected.items():
        assert STEP_TYPES[kind] is cls
    assert filters.GopherQuality.kind == "gopher_quality"


def test_unknown_parameter_is_rejected() -> None:
    with pytest.raises(ValidationError, match="min_words"):
        GopherQuality(min_words=3)
    with pytest.raises(ValidationError):
        GopherRepetition(top_n_grams={"two": 0.2})
    with pytest.raises(ValidationError):
        Pii(emails="maybe")


def test_recipe_style_construction() -> None:
    step = STEP_TYPES["gopher_repetition"](top_n_grams={"2": 0.5}, dup_line_frac=None)
    assert step.top_n_grams == {2: 0.5}
    assert step.dup_line_frac is None


def test_defaults_match_datatrove() -> None:
    g = GopherQuality()
    assert (g.min_doc_words, g.max_doc_words, g.min_avg_word_length, g.max_avg_word_length) == (
        50,
        100_000,
        3,
        10,
    )
    assert g.stop_words["en"] == ["the", "be", "to", "of", "and", "that", "have", "with"]
    r = GopherRepetition()
    assert r.top_n_grams == {2: 0.2, 3: 0.18, 4: 0.16}
    assert r.dup_n_grams[5] == 0.15 and r.dup_n_grams[10] == 0.10
    f = FineWeb()
    assert (f.line_punct_thr, f.short_line_thr, f.short_line_length) == (0.12, 0.67, 30)


# ---------------------------------------------------------------- normalize


def test_normalize_nfd_to_nfc() -> None:
    text = "Cafe\u0301 au lait, Vie\u0323\u0302t Nam."
    result = Normalize().apply(doc(text))
    assert isinstance(result, Edit)
    assert result.reason == "normalize.changed"
    assert result.doc.text == "Café au lait, Việt Nam."


def test_normalize_control_chars_and_whitespace() -> None:
    text = "\ufeffa\x00b\x07c\tkept\r\nline two  \t with   gaps   \r\n    indented\rlast\n\n\n\n\n\nend\n"
    result = Normalize().apply(doc(text))
    assert isinstance(result, Edit)
    assert result.doc.text == "abc\tkept\nline two  \t with   gaps\n    indented\nlast\n\n\nend"
    collapsed = Normalize(collapse_spaces=True).apply(doc(text))
    assert collapsed.doc.text == "abc\tkept\nline two with gaps\n    indented\nlast\n\n\nend"


def test_normalize_keeps_tables_and_code_by_default() -> None:
    """Before (#17 finding 1): padded tables and aligned code lost their spacing (up to 33%
    of a Debian Reference document's characters)."""
    table = "|       package        |popcon|\n|----------------------|------|\n| apt                  |  99  |"
    code = "x = 1        # set x\nlonger = 22  # aligned comment"
    for text in (table, code):
        d = doc(text)
        assert Normalize().apply(d) is d


def test_normalize_clean_text_is_untouched() -> None:
    d = doc("Already clean.\n\n\tIndented with a tab.")
    assert Normalize().apply(d) is d


def _normalize_by_regex(text: str) -> str:
    """Normalize's default rules as regexes over the whole text (the reference)."""
    import re
    import unicodedata

    text = re.sub("\r\n?|[\x0b\x0c\x85\u2028\u2029]", "\n", text)
    text = re.sub("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufeff]", "", text)
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"[^\S\n]+$", "", text, flags=re.MULTILINE)
    return re.sub(r"\n{4,}", "\n\n\n", text).strip("\n")


def test_normalize_equals_the_regexes_on_every_kind_of_whitespace() -> None:
    import pydoc_data.topics

    edge = [
        "a \t\u3000\nb\u00a0 \r\nc\u2028d \x1c\x1f\n\n\n\n\ne\u2029 \x85f\x0bg\x0c \n",
        "ascii \r only\rlines \n\n\n\n\n\nend  ",
        "e\u0301 \ufeff\x00x\x7f \u2003\n\u202f",
        "\n\n  lead\n\n\ntrail\n\n\n\n",
    ]
    for text in edge + list(pydoc_data.topics.topics.values())[:40]:
        out = Normalize().apply(doc(text))
        want = _normalize_by_regex(text)
        got = out.doc.text if isinstance(out, Edit) else (out.text if isinstance(out, Doc) else "")
        assert got == want or (isinstance(out, Drop) and not want.strip())


def test_normalize_empty() -> None:
    dropped(Normalize().apply(doc(" \x00\x01 \n\r\n\t ")), "normalize.empty")
    dropped(Normalize().apply(doc("")), "normalize.empty")


# ---------------------------------------------------------------- gopher quality


def test_gopher_quality_passes_prose() -> None:
    d = doc(EN)
    assert GopherQuality().apply(d) is d


@pytest.mark.parametrize(
    ("text", "lang"), [(DE, "de"), (VI, "vi"), (VI, "vie_Latn"), (DE, "de-AT")]
)
def test_gopher_quality_other_languages_use_their_own_stop_words(text: str, lang: str) -> None:
    assert len(_WORD.findall(text)) >= 60
    d = doc(text, lang=lang)
    assert GopherQuality().apply(d) is d
    # Judged by the English list, the same paragraph would be thrown away.
    result = dropped(GopherQuality().apply(doc(text, lang="en")), "gopher_quality.stop_words")
    assert result.detail == "0 < 2 (en)"


def test_gopher_quality_vietnamese_in_nfd_still_finds_stop_words() -> None:
    import unicodedata

    d = doc(unicodedata.normalize("NFD", VI), lang="vi")
    assert GopherQuality().apply(d) is d


def test_gopher_quality_rejects_english_without_stop_words() -> None:
    result = dropped(GopherQuality().apply(doc(SPAM)), "gopher_quality.stop_words")
    assert result.detail == "0 < 2 (en)"
    # No list for the language: the rule is skipped rather than judged by English.
    d = doc(SPAM, lang="sw")
    assert GopherQuality().apply(d) is d
    d = doc(SPAM)
    assert GopherQuality(min_stop_words=None).apply(d) is d


def test_gopher_quality_stop_words_ignore_case() -> None:
    text = SPAM + " The end. With love."
    d = doc(text)
    assert GopherQuality().apply(d) is d


def test_gopher_quality_word_count() -> None:
    result = dropped(
        GopherQuality().apply(doc("Too short to be a document.")), "gopher_quality.too_few_words"
    )
    assert result.detail == "6 < 50"
    result = dropped(
        GopherQuality(max_doc_words=60).apply(doc(EN)), "gopher_quality.too_many_words"
    )
    assert result.detail.endswith("> 60")
    dropped(GopherQuality().apply(doc("... !!! ---")), "gopher_quality.too_few_words")


def test_gopher_quality_mean_word_length() -> None:
    short = " ".join(["it is up to me and to the ox"] * 8)
    result = dropped(GopherQuality().apply(doc(short)), "gopher_quality.mean_word_length")
    assert result.detail == "2.22 < 3"
    long = " ".join(["internationalization and the characteristically incomprehensible"] * 12)
    result = dropped(GopherQuality().apply(doc(long)), "gopher_quality.mean_word_length")
    assert " > 10" in result.detail


def test_gopher_quality_symbols() -> None:
    hashes = EN + " " + " ".join(f"#tag{i}" for i in range(12))
    dropped(GopherQuality().apply(doc(hashes)), "gopher_quality.hash_ratio")
    ellipses = EN + " …" * 10
    dropped(GopherQuality().apply(doc(ellipses)), "gopher_quality.ellipsis_ratio")


def test_gopher_quality_lines() -> None:
    sentences = EN.split(". ")
    bullets = "\n".join(f"• {s}" for s in sentences)
    dropped(GopherQuality().apply(doc(bullets)), "gopher_quality.bullet_lines")
    # Blank lines between items don't dilute the share.
    dropped(
        GopherQuality().apply(doc(bullets.replace("\n", "\n\n"))), "gopher_quality.bullet_lines"
    )
    teasers = "\n".join(s + "..." if i % 2 else s for i, s in enumerate(sentences))
    result = dropped(GopherQuality().apply(doc(teasers)), "gopher_quality.ellipsis_lines")
    assert result.detail.endswith("> 0.3")


def test_gopher_quality_alpha_words() -> None:
    numbers = EN + " " + " ".join(str(1000 + i) for i in range(40))
    result = dropped(GopherQuality().apply(doc(numbers)), "gopher_quality.alpha_words")
    assert result.detail.endswith("< 0.8")


# ---------------------------------------------------------------- gopher repetition


def test_gopher_repetition_passes_prose_and_short_text() -> None:
    for text in (EN, EN_LINES, DE, VI, "hello world"):
        d = doc(text)
        assert GopherRepetition().apply(d) is d


def test_gopher_repetition_paragraphs() -> None:
    a, b = EN[:200], EN[200:400]
    text = "\n\n".join([a, b, a, a])
    result = dropped(GopherRepetition().apply(doc(text)), "gopher_repetition.dup_para_frac")
    assert result.detail == "0.500 > 0.3"
    shorts = [" ".join(made_up_words(3, 3 * i)) for i in range(10)]
    text = "\n\n".join([EN, *shorts, EN])
    dropped(GopherRepetition().apply(doc(text)), "gopher_repetition.dup_para_char_frac")


def test_gopher_repetition_lines() -> None:
    lines = [" ".join(made_up_words(8, 8 * i)) for i in range(6)] + ["Home"] * 5
    dropped(GopherRepetition().apply(doc("\n".join(lines))), "gopher_repetition.dup_line_frac")
    lines = [" ".join(made_up_words(3, 3 * i)) for i in range(8)] + [EN, EN]
    dropped(GopherRepetition().apply(doc("\n".join(lines))), "gopher_repetition.dup_line_char_frac")


def test_gopher_repetition_top_ngram() -> None:
    text = " ".join(f"apple pie {w}" for w in made_up_words(40))
    result = dropped(GopherRepetition().apply(doc(text)), "gopher_repetition.top_2_gram")
    assert result.detail.endswith("> 0.2")


def test_gopher_repetition_duplicated_ngrams() -> None:
    phrase = " ".join(made_up_words(10, 500))
    filler = made_up_words(60)
    text = " ".join([*filler[:20], phrase, *filler[20:40], phrase, *filler[40:], phrase])
    result = dropped(GopherRepetition().apply(doc(text)), "gopher_repetition.dup_5_gram")
    assert result.detail.endswith("> 0.15")
    # The same document without the repeats passes.
    d = doc(" ".join([*filler, phrase]))
    assert GopherRepetition().apply(d) is d


def test_dup_ngram_chars_counts_overlaps_once() -> None:
    # Repeats of "abc", "bca", "cab" start at 3..6 and cover words 3..8: six characters,
    # not 4 occurrences x 3.
    assert _dup_ngram_chars(_NGrams(list("abcabcabc")), 3) == 6
    assert _dup_ngram_chars(_NGrams(list("abcdefgh")), 3) == 0
    assert _dup_ngram_chars(_NGrams(["a", "b"]), 3) == 0 == _top_ngram_chars(_NGrams([]), 2)


def _tuples_dup_chars(words: list[str], n: int) -> int:
    """The rule on tuples of strings, as it was written before numpy (the reference)."""
    prefix = [0, *itertools.accumulate(map(len, words))]
    keys = list(zip(*(words[k:] for k in range(n)), strict=False))
    first = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1), strict=True))
    chars = covered_to = 0
    for i, key in enumerate(keys):
        if first[key] != i:
            start = max(i, covered_to)
            covered_to = i + n
            chars += prefix[covered_to] - prefix[start]
    return chars


def _tuples_top_chars(words: list[str], n: int) -> int:
    grams = collections.Counter(zip(*(words[k:] for k in range(n)), strict=False))
    if not grams or (top := grams.most_common(1)[0])[1] < 2:
        return 0
    return (sum(map(len, top[0])) + n - 1) * top[1]


def test_ngram_rules_on_ids_equal_the_rules_on_tuples() -> None:
    """Real text (the standard library's help topics), alone and with its own sentences
    repeated, scores the same on integer ids as on tuples of words, for every n."""
    import pydoc_data.topics

    rng = random.Random(0)
    for text in list(pydoc_data.topics.topics.values())[:60]:
        words = _WORD.findall(text)
        pasted = words + words[: rng.randint(0, 40)] + words[5:30] + words[: rng.randint(0, 9)]
        for ws in (words, pasted, words[:7]):
            grams = _NGrams(ws)
            for n in range(2, 11):
                assert _dup_ngram_chars(grams, n) == _tuples_dup_chars(ws, n)
                assert _top_ngram_chars(grams, n) == _tuples_top_chars(ws, n)
                assert _dup_ngram_chars(_NGrams(ws), n) == _tuples_dup_chars(ws, n)  # alone


def test_word_counts_without_a_second_regex_equal_the_regexes() -> None:
    """The non-alpha count from the words, and the stop words counted until enough, equal
    what the regex and the Counter gave, on real text and on tokens at the edges of the
    definitions (underscores, superscripts, other scripts' digits, combining marks)."""
    import pydoc_data.topics

    edge = "__ _1 a_1 2021 ²³ ١٢٣ ٣a 1\u0301 x\u0301 Ⅻ 12_34 _ é e\u0301 The THE the, ĐÃ đã"
    ascii_edge = "x\x1cy\x1f_z\tq-r'S.T;\x00u\x7fv[w]  9_9\r\n\x0bend"
    texts = [edge, ascii_edge, *list(pydoc_data.topics.topics.values())[:80]]
    for text in texts:
        words = words_of(text)
        assert words == _WORD.findall(text) and words_of(text) is words  # remembered
        assert count_non_alpha(words) == len(_NON_ALPHA_WORD.findall(text))
        assert minhash_words(text) == re.findall(r"\w+", text.lower())
        for pattern, pair in ((r"\n{2,}", "\n\n"), (r"\n+", "\n")):  # gopher_repetition's
            want = [p.strip() for p in re.split(pattern, text.strip())]
            got = [p.strip() for p in text.strip().split(pair)]
            assert [p for p in got if p] == [p for p in want if p]
        for stop in (frozenset({"the", "of", "to"}), frozenset({"đã", "xyz"})):
            for enough in (1, 2, 5, 10**9):
                counts = collections.Counter(w.lower() for w in words)
                nfc = sum(c for w, c in counts.items() if w in stop or _nfc(w) in stop)
                assert _stop_words(words, stop, enough) == min(nfc, enough)


def _nfc(w: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFC", w)


# ---------------------------------------------------------------- c4


def test_c4_keeps_clean_text() -> None:
    d = doc(EN_LINES)
    assert C4().apply(d) is d


def test_c4_removes_bad_lines() -> None:
    lines = EN_LINES.split("\n")
    noisy = "\n".join(
        [
            "Home",
            lines[0],
            "Please enable JavaScript to view the comments powered by Disqus.",
            *lines[1:],
            "This website uses cookies to improve your experience.",
            "Read our privacy policy.",
            "Share on Facebook",
        ]
    )
    result = C4().apply(doc(noisy))
    assert isinstance(result, Edit)
    assert result.reason == "c4.lines_removed"
    assert result.detail == f"5 of {len(lines) + 5} lines"
    assert result.doc.text == EN_LINES


def test_c4_keeps_paragraph_breaks_and_removes_citations() -> None:
    lines = EN_LINES.split("\n")
    text = "\n".join(lines[:3]) + "[1]\n\n" + "\n".join(lines[3:])
    result = C4().apply(doc(text))
    assert isinstance(result, Edit)
    assert result.reason == "c4.citations_removed"
    assert result.doc.text == "\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:])


def test_c4_page_rules() -> None:
    dropped(C4().apply(doc(EN_LINES + "\nLorem ipsum dolor sit amet.")), "c4.lorem_ipsum")
    dropped(
        C4().apply(doc(EN_LINES + "\nThe body is written as { return x; } in C.")),
        "c4.curly_bracket",
    )
    # A curly bracket on a line that was already removed does not condemn the page.
    result = C4().apply(doc(EN_LINES + "\nint main() {"))
    assert isinstance(result, Edit) and result.reason == "c4.lines_removed"
    result = dropped(
        C4().apply(doc("One short line here.\nAnd another one.")), "c4.too_few_sentences"
    )
    assert result.detail == "2 < 5"
    dropped(C4(min_num_sentences=None).apply(doc("Home\nAbout us")), "c4.empty")


def test_c4_toggles() -> None:
    text = EN_LINES + "\nThis page needs javascript to work."
    d = doc(text)
    assert C4(filter_javascript=False).apply(d) is d
    d = doc(EN_LINES + "\nNo full stop at the end of this line")
    assert C4(filter_no_terminal_punct=False).apply(d) is d
    d = doc(EN_LINES + "\nLorem ipsum dolor sit amet.")
    assert C4(filter_lorem_ipsum=False).apply(d) is d


def test_c4_terminal_punctuation_beyond_ascii() -> None:
    zh = "今天天气很好。我们去公园散步吧！你想一起去吗？\n他说：“好的。”\n明天见。"
    d = doc(zh)
    assert C4(min_words_per_line=None).apply(d) is d
    for line in ["Er sagte: „Ja.“", "C’est fini »", "Il a dit « oui. »", "¿Qué tal?", "यह ठीक है।"]:
        assert _ends_sentence(line), line
    assert not _ends_sentence("And then...")
    assert not _ends_sentence("Read more…")


# ---------------------------------------------------------------- fineweb


def test_fineweb_passes_prose() -> None:
    for text in (EN, EN_LINES, EN_LINES.replace("\n", "\n\n"), DE, VI):
        d = doc(text)
        assert FineWeb().apply(d) is d


def test_fineweb_line_punctuation() -> None:
    menu = "\n".join(" ".join(made_up_words(6, 6 * i)) for i in range(12))
    result = dropped(FineWeb().apply(doc(menu)), "fineweb.line_punct_ratio")
    assert result.detail == "0.000 <= 0.12"


def test_fineweb_short_lines() -> None:
    text = "\n".join(" ".join(made_up_words(2, 2 * i)).capitalize() + "." for i in range(10))
    text += "\n" + EN
    result = dropped(FineWeb().apply(doc(text)), "fineweb.short_line_ratio")
    assert result.detail == "0.909 >= 0.67"


def test_fineweb_duplicated_lines() -> None:
    lines = EN_LINES.split("\n")
    text = "\n".join([*lines, lines[1]])
    dropped(FineWeb().apply(doc(text)), "fineweb.char_dup_ratio")


def test_fineweb_list_ratio() -> None:
    words = made_up_words(40)
    text = "\n".join(
        f"{words[i]}{words[i + 1]}{words[i + 2]} {words[i + 3]}{words[i + 4]}."
        for i in range(0, 40, 5)
    )
    result = dropped(FineWeb().apply(doc(text)), "fineweb.list_ratio")
    assert result.detail == "0.438 > 0.3"


def test_fineweb_empty() -> None:
    dropped(FineWeb().apply(doc("\n \n")), "fineweb.empty")


# ---------------------------------------------------------------- pii


def test_pii_emails() -> None:
    result = Pii().apply(doc("Write to jane.doe+news@example.co.uk or ops@mail-1.shop-mail.org."))
    assert isinstance(result, Edit)
    assert result.reason == "pii.email"
    assert result.detail == "2 emails, 0 ips"
    assert result.doc.text == "Write to <EMAIL> or <EMAIL>."


def test_pii_ips() -> None:
    text = (
        "Ping 8.8.8.8, then 2a00:1450:4001:80b::200e. Our router is 192.168.1.1 and "
        "localhost is 127.0.0.1 or ::1. Python 3.11.7 and version 1.2.3.4.5 are not hosts; "
        "neither is 999.1.1.1, std::vector, dead::beef or 12:30:45."
    )
    result = Pii().apply(doc(text))
    assert isinstance(result, Edit)
    assert result.reason == "pii.ip"
    assert result.detail == "0 emails, 2 ips"
    assert result.doc.text == text.replace("8.8.8.8", "<IP>").replace(
        "2a00:1450:4001:80b::200e", "<IP>"
    )
    everything = Pii(only_public_ips=False).apply(doc(text))
    assert isinstance(everything, Edit)
    assert "192.168.1.1" not in everything.doc.text and "3.11.7" in everything.doc.text


def test_pii_both_and_toggles() -> None:
    text = "Mail admin@shop-mail.com from 203.0.113.7 or 81.2.69.160 please."
    result = Pii().apply(doc(text))
    assert isinstance(result, Edit)
    assert result.reason == "pii.email+ip"
    assert result.doc.text == "Mail <EMAIL> from 203.0.113.7 or <IP> please."
    result = Pii(emails=False, ip_placeholder="[ip]").apply(doc(text))
    assert isinstance(result, Edit)
    assert result.reason == "pii.ip"
    assert result.doc.text == "Mail admin@shop-mail.com from 203.0.113.7 or [ip] please."
    d = doc(text)
    assert Pii(emails=False, ips=False).apply(d) is d


def test_pii_leaves_numbering_multicast_and_example_addresses_alone() -> None:
    """Before (#17 finding 2): the Debian Reference's section numbers became <IP>, and so
    did mDNS's multicast group and yourname@example.com."""
    text = (
        "6.2.4.1. Configuring the resolver\n"
        "See Section 6.2.4.3 and § 1.2.3.4 for details.\n"
        "mDNS answers on 224.0.0.251; write to yourname@example.com or root@host.test.\n"
    )
    d = doc(text)
    assert Pii().apply(d) is d
    # real addresses beside them are still found, at the start of a log line too
    log = "81.2.69.160 - - [01/Dec/2026] GET /\nFrom ops@shop-mail.com, host 8.8.8.8."
    result = Pii().apply(doc(log))
    assert result.doc.text == "<IP> - - [01/Dec/2026] GET /\nFrom <EMAIL>, host <IP>."


# Real section references, outline numbers and versions: each stays as it is, even with
# every address counted (only_public_ips=False).
REFERENCES = [
    "See Section 6.2.4.1 and 6.2.4.3 for the details.",  # the Debian Reference (#28 item 4)
    "6.2.4.1. Configuring the resolver",
    "RFC 5280, Section 4.2.1.3 defines the key usage extension.",
    "The basicConstraints extension (RFC 5280 \u00a74.2.1.9) marks a CA certificate.",
    "RFC 5280, 4.2.1.3 lists the key usage bits.",
    "BGP breaks ties as RFC 4271 section 9.1.2.2 describes.",
    "DO-178C 6.4.4.2 asks for structural coverage analysis.",
    "IEC 61508-3, 7.4.2.12 covers pre-existing software elements.",
    "ISO 27001 A.9.2.3 covers the management of privileged access rights.",
    "PCI DSS Requirement 10.2.1.1 logs all individual user access to cardholder data.",
    "1.1.1.1 Ensure mounting of cramfs filesystems is disabled (Automated)",
    "4.1.1.1 Ensure auditd is installed",
    "as required by \u00a7 4.1.2.3 and \u00a7\u00a7 4.1.2.4-4.1.2.6 of the code",
    "Sections 12.3.4.1 through 12.3.4.5 apply to every tenant.",
    "under Clause 14.2.1.3 of the contract, the supplier indemnifies the buyer",
    "Article 9.3.2.1 of the statute sets the deadline.",
    "For the wiring, see 3.2.1.4 and 3.2.1.5 of this manual.",
    "see 12.3.1, 12.3.4.1 and 12.3.4.2",
    "Table 4.2.1.1 and Figure 3.2.1.4 give the limits.",
    "Chapter 15.4.3.2 explains the fault codes.",
    "Python 3.11.7.1 is installed.",
    "pin numpy==1.26.4.1 in requirements.txt",
    "Released as version 2.4.1.0 in May.",
]
# Real addresses in the places they occur, each with the addresses it holds.
ADDRESSES = [
    ("192.168.1.1", ["192.168.1.1"]),
    ("10.0.0.254", ["10.0.0.254"]),
    ("nameserver 8.8.8.8", ["8.8.8.8"]),
    ("Set the DNS server to 8.8.8.8 and 8.8.4.4.", ["8.8.8.8", "8.8.4.4"]),
    ("the server at 172.16.254.1:8080 answers", ["172.16.254.1"]),
    ("ping 1.1.1.1", ["1.1.1.1"]),
    ("ping -c 3 9.9.9.9", ["9.9.9.9"]),
    ("a connection from 127.0.0.1", ["127.0.0.1"]),
    ("IP 10.1.2.3 and 10.1.2.4", ["10.1.2.3", "10.1.2.4"]),  # a list of addresses
    ("IPs 81.2.69.160, 81.2.69.161 and 81.2.69.162", ["81.2.69.160", "81.2.69.161", "81.2.69.162"]),
    ("81.2.69.160 - - [01/Dec/2026] GET /", ["81.2.69.160"]),
    ("Failed password for root from 81.2.69.160 port 22 ssh2", ["81.2.69.160"]),
    ("open http://81.2.69.160/admin", ["81.2.69.160"]),
    ("0.5,81.2.69.160", ["81.2.69.160"]),  # CSV: a decimal beside it is no list
    ("01.12.2024, 81.2.69.160", ["81.2.69.160"]),  # nor is a date
    ("host 2.3.4.5 is down", ["2.3.4.5"]),
    ("Section 6.2.4.1 lists the router at 10.0.0.1.", ["10.0.0.1"]),
]


@pytest.mark.parametrize("text", REFERENCES)
def test_pii_keeps_section_references_and_versions(text: str) -> None:
    """Before (#28 item 4): "See Section 6.2.4.1 and 6.2.4.3" lost 6.2.4.3 to <IP>; the
    rule, not a list of strings, keeps numbering (``Pii``'s docstring)."""
    for step in (Pii(), Pii(only_public_ips=False)):
        d = doc(text)
        assert step.apply(d) is d, text


@pytest.mark.parametrize(("text", "addresses"), ADDRESSES)
def test_pii_masks_real_addresses(text: str, addresses: list[str]) -> None:
    result = Pii(only_public_ips=False).apply(doc(text))
    assert isinstance(result, Edit), text
    assert result.doc.text.count("<IP>") == len(addresses), result.doc.text
    assert not any(a in result.doc.text for a in addresses), result.doc.text


def test_pii_leaves_clean_text_alone() -> None:
    d = doc("Released in version 3.11.7 on 2023-12-04 at 10:30:00, see @python on social media.")
    assert Pii().apply(d) is d
