"""The licence and the citation files agree with pyproject.toml and name the paper."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
TITLE = "Dynamic Group Convolution for Accelerating Convolutional Neural Networks"


def test_license_is_the_mit_license_of_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^license = "MIT"', pyproject, flags=re.M)
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text
    assert yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))["license"] == "MIT"


def test_citation_file_describes_the_software_and_prefers_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert {"message", "title", "authors"} <= set(cff)
    paper = cff["preferred-citation"]
    assert paper["title"] == TITLE and paper["year"] == 2020 and "ECCV" in paper["collection-title"]
    assert [a["family-names"] for a in paper["authors"]] == ["Su", "Fang", "Kang", "Hu", "Pietikäinen", "Liu"]
    assert "arXiv:2007.04242" in [i["value"] for i in paper["identifiers"]]


def test_readme_cites_the_paper_in_bibtex():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Citing\n.*?```bibtex\n(@inproceedings\{su2020dgc,.*?)```", readme, flags=re.S)
    assert block, "README has no Citing section with the paper's BibTeX entry"
    entry = block.group(1)
    assert f"title         = {{{TITLE}}}" in entry
    for field in ("booktitle     = {European Conference on Computer Vision (ECCV)}", "year          = {2020}",
                  "2007.04242"):
        assert field in entry, field
    assert entry.count("{") == entry.count("}")
