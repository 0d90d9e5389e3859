"""Help screens: arguments by name (`INPUT`, `RUN`), flags as `--dicom/--no-dicom` without a value
type, and every option with a fixed set of values lists them (`--method [a-os|a-dps|...]`)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from ambientmri.cli import app
from ambientmri.cli import common as cli

COMMANDS = ["synth", "mask", "prepare", "upgrade-store", "check-corruption", "train", "sample", "reconstruct",
            "evaluate", "compare-samples", "audit", "export", "recipes", "demo"]


def _help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_no_python_names_and_no_value_type_on_flags(command):
    text = _help(command)
    assert not re.search(r"[{\[<]?[a-z]+_[}\]>]?\s", text.split("Usage:", 1)[1].splitlines()[0])
    assert "{input_}" not in text and "input_" not in text and "type_" not in text and "set_ " not in text
    for line in text.splitlines():
        if re.search(r"│\s+--(overwrite|dicom|resume|dry-run|no-controls|nifti|previews)\b", line):
            assert "<bool>" not in line, line


def test_reconstruct_help_names_its_argument_lists_its_choices_and_pairs_its_flags():
    text = _help("reconstruct")
    assert "reconstruct [OPTIONS] {INPUT}" in text and "│ *    INPUT " in text
    assert "[a-os|a-dps|dps|ddrm|zero-filled|sense|l1-wavelet]" in text
    assert "[measured|further]" in text and "[auto|cpu|cuda]" in text
    assert re.search(r"--dicom\s+--no-dicom", text) and re.search(r"--nifti\s+--no-nifti", text)
    assert "{RUN}" in _help("sample") and "{RUN}" in _help("export") and "{RECIPE}" in _help("train")


@pytest.mark.parametrize(("command", "choices"), [
    ("synth", ["[singlecoil|multicoil]", "[brain|knee]", "[train|val|test|challenge]"]),
    ("mask", ["[random|equispaced|equispaced_fraction|magic|magic_fraction|poisson|uniform2d]"]),
    ("sample", ["[heun|euler]", "[auto|cpu|cuda]"]),
    ("evaluate", ["[singlecoil|multicoil]"]),
    ("audit", ["[kspace|pixels]"]),
    ("recipes", ["[list|show]"]),
])
def test_fixed_value_sets_are_listed(command, choices):
    text = _help(command)
    for choice in choices:
        assert choice in text, (command, choice)


def test_the_listed_values_are_the_librarys():
    from ambientmri.evaluation.metrics import CHALLENGES
    from ambientmri.operators.masks import MASK_TYPES
    from ambientmri.sampling.generate import SAMPLERS
    from ambientmri.sampling.methods import DC_STEPS, MASK_CHANNELS, METHODS

    assert cli.RECONSTRUCT_METHODS == METHODS and cli.MASK_CHANNELS == MASK_CHANNELS
    assert cli.DC_STEPS == DC_STEPS
    assert cli.MASK_TYPE_NAMES == MASK_TYPES and cli.SAMPLERS == tuple(SAMPLERS)
    assert cli.CHALLENGES == CHALLENGES
    from ambientmri.audit.run import SEARCHES

    assert cli.SEARCHES == SEARCHES


def test_reconstruct_refuses_an_unlisted_method_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["reconstruct", str(tmp_path), "--out", str(tmp_path / "o"),
                                      "--method", "magic"])
    assert result.exit_code == 2 and "allowed: a-os" in result.output


def test_the_audit_report_links_the_shipped_docs_relative_to_its_folder(tmp_path):
    import re as _re
    from pathlib import Path

    from ambientmri.audit.report import DOCS, doc_link

    out = tmp_path / "audits" / "r1"
    link = doc_link("audit.md", "reading-the-report", "the audit guide", out)
    (href,) = _re.findall(r"href='([^']+)'", link)
    path, anchor = href.split("#")
    assert (out / path).resolve() == (DOCS / "audit.md").resolve() and not Path(path).is_absolute()
    assert "## Reading the report" in (DOCS / "audit.md").read_text(encoding="utf-8") and anchor == "reading-the-report"
    assert "## 6. Memorization measurement" in (DOCS / "theory.md").read_text(encoding="utf-8")
    assert "href" not in doc_link("audit.md", "reading-the-report", "the audit guide", None)
