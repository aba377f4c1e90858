"""Language ID: the bundled offline model on known snippets, and the langid step's policies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from steep.datahub.steps.base import STEP_TYPES, Doc, Drop
from steep.datahub.steps.langid import LangID, detect

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
