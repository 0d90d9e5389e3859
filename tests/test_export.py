"""`ambientmri export`: a shareable model folder from a real tiny run, store, audit and evaluation.

The run trains 2 steps of a tiny MLP on a synthetic store named by absolute path (`training.store`),
so the export has machine paths to remove; the audit is a real `run_audit` of the run's samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ambientmri.audit.run import run_audit
from ambientmri.cli import EXIT_BAD_INPUT, app
from ambientmri.errors import InputError, OutputError
from ambientmri.export import export_model, sha256_file
from ambientmri.outputs import MARKER
from ambientmri.recipes import validate_recipe
from ambientmri.sampling.runs import load_run
from ambientmri.training.checkpoint import load_checkpoint, weights_fingerprint
from ambientmri.training.run import train_run

runner = CliRunner()

TINY = {
    "name": "tiny",
    "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "knee", "volumes": 2, "heldout_volumes": 2,
             "slices": 2, "matrix": [64, 32], "crop": [32, 32], "seed": 3},
    "corruption": {"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
    "model": {"kind": "mlp", "hidden": [32], "embedding_dim": 16},
    "training": {"steps": 2, "batch_size": 4, "log_every": 1, "eval_every": 0, "device": "cpu"},
}


def _ok(args: list[str]):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result


def _recipe(**training):
    tree = json.loads(json.dumps(TINY))
    tree["training"].update(training)
    return validate_recipe(tree, "tiny")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    data_run, run = root / "data_run", root / "run"
    train_run(_recipe(), data_run)  # synthesizes and prepares data_run/data/{raw,store,heldout_store}
    store, held = (data_run / "data" / "store").resolve(), (data_run / "data" / "heldout_store").resolve()
    train_run(_recipe(store=str(store), heldout_store=str(held)), run)
    samples = root / "samples"
    _ok(["sample", run, "--num", 4, "--steps", 2, "--device", "cpu", "--out", samples])
    audit = root / "audit"
    run_audit(samples, store, held, audit)
    recon, metrics = root / "recon", root / "metrics.json"
    raw_held = data_run / "data" / "raw" / "heldout"
    _ok(["reconstruct", raw_held, "--out", recon, "--method", "a-os", "--run", run, "--device", "cpu"])
    _ok(["evaluate", "--targets", raw_held, "--predictions", recon, "--json", metrics])
    model = root / "model"
    _ok(["export", run, "--out", model, "--audit", audit, "--evaluation", metrics])
    return {"root": root, "run": run, "data_run": data_run, "store": store, "held": held, "samples": samples,
            "audit": audit, "metrics": metrics, "model": model}


def test_weights_only_state_dict_and_fingerprints(exported) -> None:
    model = exported["model"]
    weights = torch.load(model / "weights.pt", weights_only=True)
    ema = load_checkpoint(exported["run"] / "checkpoints" / "last.pt")["ema"]
    assert isinstance(weights, dict) and set(weights) == set(ema)
    assert all(torch.equal(weights[k], ema[k]) for k in ema)  # the EMA weights, nothing else
    meta = json.loads((model / "model.json").read_text())
    assert meta["format"] == "ambientmri-model"
    assert meta["weights"]["sha256"] == sha256_file(model / "weights.pt")
    assert meta["checkpoint_hash"] == weights_fingerprint(weights)
    samples_meta = json.loads((exported["samples"] / "meta.json").read_text())
    assert samples_meta["checkpoint_hash"] == meta["checkpoint_hash"]
    assert sorted(p.name for p in model.iterdir()) == sorted([MARKER, "MODEL_CARD.md", "model.json", "recipe.yaml",
                                                              "weights.pt"])


def test_card_reports_data_budget_metrics_and_audit(exported) -> None:
    model = exported["model"]
    card = (model / "MODEL_CARD.md").read_text(encoding="utf-8")
    meta = json.loads((model / "model.json").read_text())
    summary = json.loads((exported["audit"] / "summary.json").read_text())
    evaluation = json.loads(exported["metrics"].read_text())
    manifest = json.loads((exported["store"] / "manifest.json").read_text())
    assert f"{manifest['num_subjects']} subject(s)" in card and "Pseudonymized: yes" in card
    assert "synthetic phantoms" in card and "singlecoil" in card
    assert "R = 2" in card and "R̃ = 3" in card and "**cartesian**" in card
    assert "No clean image was used" in card
    assert "2 steps, 8 training images seen" in card and "Device: cpu" in card
    assert f"PSNR {evaluation['mean']['psnr']:.2f} dB" in card
    assert f"Verdict: {summary['verdict']}" in card or f"**{summary['verdict'].replace('_', ' ')}**" in card
    lo, hi = summary["ci95"]
    # the interval, then (audits that record it) its method
    assert f"Memorized fraction: {summary['memorized_fraction']:.1%} of 4 generated scans (95% CI {lo:.1%}–{hi:.1%}" \
        in card
    assert f"Threshold τ = {summary['threshold']:.4g}" in card and "perturbed copies" in card
    assert sha256_file(exported["audit"] / "summary.json") in card
    assert meta["weights"]["sha256"] in card and meta["recipe"]["sha256"] in card
    assert meta["recipe"]["sha256"] == sha256_file(model / "recipe.yaml")
    from ambientmri import __version__

    assert f"ambientmri version: {__version__}" in card
    assert meta["recipe"]["removed_keys"] == ["training.store", "training.heldout_store"]


def test_the_model_folder_works_wherever_a_run_does(exported, tmp_path) -> None:
    run, model = load_run(exported["run"]), load_run(exported["model"])
    assert model.exported and not run.exported
    assert (model.step, model.image_shape, model.objective) == (run.step, run.image_shape, run.objective)
    assert model.checkpoint_hash == run.checkpoint_hash
    u, cond, sigma = torch.randn(2, 32, 32, dtype=torch.complex64), torch.ones(2, 32, 32), torch.full((2,), 0.5)
    assert torch.equal(run.model(u, cond, sigma), model.model(u, cond, sigma))
    with pytest.raises(InputError, match="only the EMA weights"):
        load_run(exported["model"], weights="model")
    _ok(["sample", exported["model"], "--num", 2, "--steps", 2, "--device", "cpu", "--out", tmp_path / "s"])
    assert json.loads((tmp_path / "s" / "meta.json").read_text())["checkpoint_hash"] == run.checkpoint_hash
    assert load_run(exported["model"] / "weights.pt").exported  # the weights file names its folder
    raw_held = exported["data_run"] / "data" / "raw" / "heldout"
    _ok(["reconstruct", raw_held, "--out", tmp_path / "r", "--method", "a-os", "--run", exported["model"],
         "--device", "cpu"])
    assert sorted(p.name for p in (tmp_path / "r").glob("*.h5")) == sorted(p.name for p in raw_held.glob("*.h5"))


def test_no_machine_path_and_no_phi(exported) -> None:
    from ambientmri.data.fastmri import FastMRIFile

    raw = exported["data_run"] / "data" / "raw"
    patients = {FastMRIFile(p).patient_id for p in raw.rglob("*.h5")}
    manifest = json.loads((exported["store"] / "manifest.json").read_text())
    sources = {v["source"] for v in manifest["volumes"]} | {Path(v["source"]).stem for v in manifest["volumes"]}
    pseudonyms = {v["subject"] for v in manifest["volumes"]}
    assert patients and sources and pseudonyms
    machine = {str(exported["root"]), str(exported["root"].resolve()), str(exported["store"]), str(Path.cwd()),
               str(Path.home())}
    for path in exported["model"].iterdir():
        blob = path.read_bytes()
        for needle in patients | sources | pseudonyms | machine:
            assert needle.encode() not in blob, f"{path.name} contains {needle!r}"
    recipe = (exported["model"] / "recipe.yaml").read_text()
    assert "store: null" in recipe and "heldout_store: null" in recipe


def test_foreign_audit_is_refused(exported, tmp_path) -> None:
    other = tmp_path / "other"
    train_run(_recipe(store=str(exported["store"]), seed=1, lr=1e-2), other)
    assert load_run(other).checkpoint_hash != load_run(exported["run"]).checkpoint_hash
    result = runner.invoke(app, ["export", str(other), "--out", str(tmp_path / "m"), "--audit", str(exported["audit"])])
    assert result.exit_code == EXIT_BAD_INPUT
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "another model's samples" in lines[0], result.stderr
    assert not (tmp_path / "m").exists()
    # an audit whose samples cannot be traced to a model is refused too
    blind = tmp_path / "blind"
    shutil.copytree(exported["audit"], blind)
    summary = json.loads((blind / "summary.json").read_text())
    summary["inputs"]["samples"].pop("checkpoint_hash")
    summary["inputs"]["samples"]["path"] = str(tmp_path / "gone")
    (blind / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(InputError, match="cannot tell which model"):
        export_model(exported["run"], tmp_path / "m2", audit=blind)


def test_without_audit_the_card_says_none(exported, tmp_path) -> None:
    info = export_model(exported["run"], tmp_path / "plain")
    card = (tmp_path / "plain" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert info["audit"] is None and info["evaluation"] is None
    assert "- audit: none" in card and "Verdict" not in card


def test_refuses_unsafe_output_folders(exported, tmp_path) -> None:
    run = exported["run"]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    cases = [(busy, "is not an earlier `ambientmri export` output"), (run / "model", "is inside the input"),
             (run, "is the input"), (run.parent, "would contain the input")]
    for out, needle in cases:
        with pytest.raises(OutputError, match=needle) as info:
            export_model(run, out)
        assert str(out) in str(info.value)
    assert (busy / "keep.txt").read_text() == "x" and not (run / "model").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    export_model(run, empty)  # an empty folder is fine
    assert (empty / "weights.pt").is_file()
    first = (empty / "model.json").read_text()
    export_model(run, empty)  # an earlier export is replaced as a whole (outputs.output_dir)
    assert (empty / "weights.pt").is_file() and json.loads((empty / "model.json").read_text())["checkpoint_hash"] \
        == json.loads(first)["checkpoint_hash"]
    export_model(run, busy, overwrite=True)
    assert not (busy / "keep.txt").exists()


def test_finetuning_starts_from_an_exported_model(exported, tmp_path) -> None:
    run = train_run(_recipe(store=str(exported["store"]), steps=1, lr=1e-9, warmup_steps=0), tmp_path / "ft",
                    init_from=exported["model"])
    assert run.step == 1
    trained = load_checkpoint(tmp_path / "ft" / "checkpoints" / "last.pt")["model"]
    weights = torch.load(exported["model"] / "weights.pt", weights_only=True)
    assert all(torch.allclose(trained[k], weights[k], atol=1e-6) for k in weights)  # lr ~ 0: the exported weights
    tampered = tmp_path / "tampered"
    shutil.copytree(exported["model"], tampered)
    with open(tampered / "weights.pt", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(InputError, match="does not match the sha256"):
        load_run(tampered)


def test_card_reads_a_verdict_code_and_its_failed_checks(exported, tmp_path) -> None:
    """The audit's summary.json with a verdict code, its sentence, failed checks and an exact interval."""
    audit = tmp_path / "audit"
    audit.mkdir()
    summary = json.loads((exported["audit"] / "summary.json").read_text())
    summary.update(
        verdict="inconclusive", verdict_sentence="Inconclusive: too few held-out scans.",
        failed_controls=[{"check": "heldout_scans", "label": "held-out scans calibrating τ", "measured": 4,
                          "target": ">= 100", "passed": False}],
        expected_false_positive_rate=0.012, ci95=[0.0, 0.602],
        settings={**summary["settings"], "ci": "exact Clopper–Pearson, 95%"},
    )
    (audit / "summary.json").write_text(json.dumps(summary))
    info = export_model(exported["run"], tmp_path / "m", audit=audit)
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert info["audit"]["verdict"] == "inconclusive"
    assert "Verdict: **inconclusive** (`inconclusive`)" in card
    assert "In words: Inconclusive: too few held-out scans." in card
    assert "Failed check: held-out scans calibrating τ: 4 (target >= 100)" in card
    assert "(95% CI 0.0%–60.2%, exact Clopper–Pearson, 95%)" in card and "Expected by chance" in card
    assert sha256_file(audit / "summary.json") in card
