"""Packaged record templates by name (#31 item 4, "or a named one"): ``--template listing``
serializes listings with optional fields left out and a record without its required
title skipped with the field's name; the same from CSV and from parquet lacking a column;
the manifest says which template made the text; the studio offers the names."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steep.cli import main
from steep.data.formats.template import load_template, packaged_templates
from steep.datahub.catalog import Catalog
from steep.datahub.steps.base import read_docs
from steep.errors import UsageError

ROWS = [
    {"title": "Desk lamp", "brand": "Acme", "price": "12", "description": "Brass, 40 cm."},
    {"title": "Oak chair", "brand": "", "price": "", "description": "Solid oak."},
    {"title": "", "brand": "X", "price": "1", "description": "a listing with no title"},
]


def _texts(name: str) -> list[str]:
    version = Catalog().get(name)
    return [d.text for s in version.shards for d in read_docs(s)]


def test_the_packaged_templates_are_named() -> None:
    assert packaged_templates() == ["listing", "qa", "review"]
    assert load_template("listing").required == ("title",)
    assert load_template("qa").required == ("question", "answer")
    with pytest.raises(UsageError, match=r"packaged template \(listing, qa, review\)"):
        load_template("listings")  # not a name, not a template: one line naming them


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_listings_by_the_packaged_template(tmp_path: Path, kind: str) -> None:
    if kind == "csv":
        path = tmp_path / "listings.csv"
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(ROWS[0]))
            writer.writeheader()
            writer.writerows(ROWS)
        brand = "Brand: Acme\n"
    else:  # a table without a brand column: an optional field, not a failure
        path = tmp_path / "listings.parquet"
        pq.write_table(
            pa.Table.from_pylist([{**r, "brand": None} for r in ROWS]).drop(["brand"]), path
        )
        brand = ""
    argv = ["data", "add", "shop", str(path), "--template", "listing", "--no-langid"]
    assert main([*argv, "--workers", "1"]) == 0
    assert _texts("shop") == [
        f"Desk lamp\n{brand}Price: 12\n\nBrass, 40 cm.",
        "Oak chair\n\nSolid oak.",
    ]
    manifest = Catalog().get("shop").manifest
    assert manifest["created_by"]["template"]["origin"] == "packaged:listing"
    assert manifest["skipped"] == {"missing field": 1}


def test_the_studio_offers_the_packaged_templates(_steep_home: Path) -> None:
    pytest.importorskip("fastapi", reason="studio extra not installed")
    from tests.test_studio_runs import client

    page = client(_steep_home).get("/datasets").text
    assert all(f'<option value="{t}">' in page for t in packaged_templates())
