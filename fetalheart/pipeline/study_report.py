"""report.md of a study: what each stage did (and why it ran), the comparison, one section per model.

Each figure appears once: the comparison figure inside the comparison section, each model's
per-class figure and loss curves in that model's section.
"""

from __future__ import annotations

import re
from pathlib import Path

from fetalheart.utils.io import write_text_atomic


def _stage_table(summaries: list[dict]) -> list[str]:
    lines = ["| stage | what | seconds | reused / why it ran |", "|---|---|---:|---|"]
    for s in summaries:
        status = "reused" if s["reused"] else s.get("why", "ran")
        lines.append(f"| {s['stage']} | {s.get('what', '')} | {s.get('seconds', 0):.0f} | {status} |")
    warnings = [w for s in summaries for w in s.get("warnings", [])]
    return lines + ([""] + [f"> warning: {w}" for w in warnings] if warnings else [])


def _comparison(out: Path) -> list[str]:
    compare_md = out / "compare" / "comparison.md"
    if not compare_md.is_file():
        return []
    body = compare_md.read_text(encoding="utf-8").split("\n", 1)[-1]  # drop its own title
    # Links in comparison.md are relative to compare/; report.md sits one folder up.
    body = re.sub(r"\]\((?!https?:|/)([^)]+)\)", r"](compare/\1)", body)
    return ["", "## Model comparison", body.strip()]


def _relative(out: Path, path: str) -> Path:
    """A stage summary's path (relative to ``out``; absolute in summaries of earlier versions)."""
    p = Path(path)
    return p.resolve().relative_to(out.resolve()) if p.is_absolute() else p


def _model_sections(out: Path, evals: list[str]) -> list[str]:
    lines: list[str] = []
    for ev in evals:
        rel = _relative(out, ev)
        name = "/".join(p for p in rel.parts[1:] if p not in ("eval",) and not p.startswith("fetalheart_"))
        lines += ["", f"## {name}", f"Full report: [{rel / 'report.md'}]({rel / 'report.md'})", "",
                  f"![per class]({rel / 'plots' / 'per_class.png'})"]
        if (out / rel / "plots" / "loss_curves.png").is_file():
            lines.append(f"![loss curves]({rel / 'plots' / 'loss_curves.png'})")
    return lines


def _pooled_sections(out: Path, pooled: list[str]) -> list[str]:
    """Cross-validation: one pooled out-of-fold report per model (every frame scored once)."""
    if not pooled:
        return []
    lines = ["", "## Pooled out-of-fold evaluation (cross-validation)", "",
             "Each model's K fold evaluations pooled: every frame was predicted by the model that did not see it "
             "in training. Per-fold numbers are in the comparison above (mean +/- std over folds)."]
    for p in pooled:
        rel = _relative(out, p)
        lines += ["", f"### {rel.parent.relative_to('evaluations')}", f"Report: [{rel / 'report.md'}]({rel / 'report.md'})"]
    return lines


def write_study_report(out: Path, summaries: list[dict]) -> Path:
    """Write ``out/report.md`` and return its path."""
    lines = ["# fetalheart study report", "", *_stage_table(summaries), *_comparison(out)]
    evaluate = next((s for s in summaries if s["stage"] == "evaluate"), {})
    lines += _pooled_sections(out, evaluate.get("pooled") or [])
    lines += _model_sections(out, evaluate.get("evals") or [])
    path = out / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
