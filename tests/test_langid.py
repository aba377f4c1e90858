"""Language ID: the bundled offline model on known snippets, and the langid step's policies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from steep.datahub.steps.base import STEP_TYPES, Doc, Drop
from steep.datahub.steps.langid import THRESHOLD, LangID, detect, identify, prose_lines

SNIPPETS = {
    "vi": (
        "Hà Nội là thủ đô của nước Cộng hòa Xã hội chủ nghĩa Việt Nam, đồng thời là thành phố "
        "lớn thứ hai của cả nước về dân số. Thành phố nằm ở trung tâm vùng đồng bằng sông Hồng, "
        "có lịch sử hơn một nghìn năm và là nơi có nhiều di tích văn hóa quan trọng."
    ),
    "de": (
        "Berlin ist die Hauptstadt und ein Land der Bundesrepublik Deutschland. Die Stadt ist "
        "mit rund 3,7 Millionen Einwohnern die bevölkerungsreichste Gemeinde Deutschlands und "
        "liegt im Nordosten des Landes an den Flüssen Spree und Havel."
    ),
    "en": (
        "The river rises in the northern hills and flows south through farmland and several "
        "small market towns before it reaches the sea. In the nineteenth century it was an "
        "important route for trade, and many of the old warehouses still stand along its banks."
    ),
    "fr": (
        "Paris est la capitale de la France et la ville la plus peuplée du pays. Située au cœur "
        "du Bassin parisien, sur une boucle de la Seine, elle est depuis le Moyen Âge l'un des "
        "principaux centres politiques, économiques et culturels de l'Europe."
    ),
}


@pytest.mark.parametrize("lang", sorted(SNIPPETS))
def test_detect_known_languages(lang: str) -> None:
    code, score = detect(SNIPPETS[lang])
    assert code == lang
    assert 0.65 < score <= 1.0


def test_detect_reads_multiline_and_all_caps_text() -> None:
    text = SNIPPETS["en"].replace(". ", ".\n\n")
    assert detect(text)[0] == "en"
    code, score = detect(SNIPPETS["de"].upper())
    assert code == "de" and score > 0.65


def test_no_letters_is_undetermined() -> None:
    assert detect("") == ("und", 0.0)
    assert detect("1234 5678 !!! ??? 99.5% --- 2024-01-01") == ("und", 0.0)


def test_step_sets_meta_and_returns_the_doc() -> None:
    doc = Doc("a:1", SNIPPETS["vi"], {"source": "a"})
    out = LangID().apply(doc)
    assert out is doc
    assert doc.meta["lang"] == "vi" and doc.meta["lang_score"] > 0.65
    assert doc.meta["source"] == "a"
    assert STEP_TYPES["langid"] is LangID


def test_digits_get_und_by_default_and_drop_on_request() -> None:
    doc = Doc("a:2", "12 34 56 -- 78.90 / 11 %")
    assert LangID().apply(doc) is doc and doc.meta["lang"] == "und"
    out = LangID(below_threshold="drop").apply(Doc("a:3", "12 34 56 -- 78.90 / 11 %"))
    assert isinstance(out, Drop) and out.reason == "langid.low_confidence"


def test_keep_filter_drops_other_languages() -> None:
    step = LangID(keep=["en", "VI"])
    out = step.apply(Doc("a:4", SNIPPETS["de"]))
    assert isinstance(out, Drop) and out.reason == "langid.language_not_kept"
    assert out.detail.startswith("de ") and out.detail.endswith("not in [en, vi]")
    assert isinstance(step.apply(Doc("a:5", SNIPPETS["en"])), Doc)
    assert isinstance(step.apply(Doc("a:6", SNIPPETS["vi"])), Doc)
    # too unsure to filter on: kept as unknown under the default policy
    assert step.apply(Doc("a:7", "1 2 3 4")).meta["lang"] == "und"


def test_parameters_are_validated() -> None:
    with pytest.raises(ValidationError, match="threshold"):
        LangID(threshold=1.5)
    with pytest.raises(ValidationError, match="below_threshold"):
        LangID(below_threshold="ignore")
    with pytest.raises(ValidationError, match="thresh"):
        LangID(thresh=0.5)


# Documentation as CPT users bring it: a table and code before the first sentence.
MANUAL_PAGE = """+------------------+--------+----------+
|     package      | popcon |   size   |
+------------------+--------+----------+
| apt              |  99.9% |  4,102kB |
| aptitude         |  12.3% |  5,337kB |
| synaptic         |   8.1% |  7,911kB |
+------------------+--------+----------+

    $ sudo apt-get update
    $ sudo apt-get install -y --no-install-recommends aptitude
    $ apt-cache policy aptitude | head -n 3

apt-get(8)  apt-cache(8)  aptitude(8)  /etc/apt/sources.list.d/

""" + (
    "The package management system keeps a list of every package that can be installed and "
    "of where it comes from. When you ask for a program, it works out which other packages "
    "that program needs and installs them too, so the system stays consistent."
)


def test_language_is_read_from_the_prose_of_a_documentation_page() -> None:
    lang, score = detect(MANUAL_PAGE)
    assert lang == "en" and score >= THRESHOLD
    assert prose_lines(MANUAL_PAGE) == [MANUAL_PAGE.splitlines()[-1]]


def test_a_long_document_is_sampled_beyond_its_start() -> None:
    # a German page whose first 2,000 characters are an English licence header
    header = (SNIPPETS["en"] + "\n") * 8
    body = "\n".join([SNIPPETS["de"]] * 30)
    lang, score = detect(header + body)
    assert lang == "de" and score >= THRESHOLD


def test_one_threshold_rule_for_ingest_and_the_step(tmp_path) -> None:
    unsure = "foo bar"  # too little text for a confident call
    lang, score = detect(unsure)
    assert score < THRESHOLD
    assert identify(unsure) == ("und", score)
    assert LangID().apply(Doc("a:8", unsure)).meta["lang"] == "und"

    import json

    from steep.data.executor import LocalExecutor
    from steep.datahub.ingest import add_dataset
    from steep.datahub.steps.base import read_docs

    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps({"text": t}) + "\n" for t in (unsure, SNIPPETS["de"])))
    version = add_dataset("mixed", [str(raw)], executor=LocalExecutor(1))
    tags = [(d.meta["lang"], d.meta["lang_score"]) for s in version.shards for d in read_docs(s)]
    assert tags[0] == ("und", pytest.approx(score))
    assert tags[1][0] == "de"
    assert version.manifest["languages"] == {"und": 1, "de": 1}


def test_words_counted_in_one_pass_per_line_equal_the_per_token_rule():
    """prose_lines counts a line's words with one regex pass; on real text (the standard
    library's help topics and the Vietnamese test documents), also with its spaces turned
    into other Unicode whitespace, that count is the per-token ``_WORD.match`` count."""
    import pydoc_data.topics

    from steep.datahub.steps.langid import _WORD, _WORDS_IN_LINE
    from tests.test_vocab import vi_docs

    texts = list(pydoc_data.topics.topics.values())[:80] + vi_docs(20)
    lines = 0
    for text in texts:
        for space in (" ", "\u00a0", "\u2003", "\x1f", "\u3000", " ,"):
            for line in text.replace(" ", space).splitlines():
                stripped = line.strip()
                per_token = sum(1 for t in stripped.split() if _WORD.match(t))
                assert len(_WORDS_IN_LINE.findall(stripped)) == per_token, stripped
                lines += 1
    assert lines > 10_000


def test_prose_lines_equal_the_rule_counted_by_the_regex_alone():
    """The letters-only shortcut in prose_lines decides no line differently from counting
    every line's words with the regex (real text, its spaces also as other whitespace)."""
    import pydoc_data.topics

    from steep.datahub.steps.langid import _MIN_WORDS, _PROMPTS, _WORD_SHARE, _WORDS_IN_LINE
    from tests.test_vocab import vi_docs

    def by_regex(text: str) -> list[str]:
        out, fenced = [], False
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith(("```", "~~~")):
                fenced = not fenced
                continue
            tokens = stripped.split()
            code = line.startswith(("    ", "\t")) or stripped.startswith(_PROMPTS)
            if fenced or code or len(tokens) < _MIN_WORDS:
                continue
            if len(_WORDS_IN_LINE.findall(stripped)) >= _WORD_SHARE * len(tokens):
                out.append(stripped)
        return out

    texts = list(pydoc_data.topics.topics.values())[:80] + vi_docs(20)
    texts += [v for v in SNIPPETS.values()] + ["Ⅻ ²³ x² words with ½ and a number 3 here ok"]
    for text in texts:
        for space in (" ", "\u00a0", "\u3000", " ,"):
            variant = text.replace(" ", space)
            assert prose_lines(variant) == by_regex(variant)
