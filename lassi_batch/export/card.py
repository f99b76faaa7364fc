"""The dataset card: README.md with the YAML front matter that Hugging Face `datasets` reads
(`configs` -> `data_files` per split), and a body that says where every number came from.

The card is written from the export's own records only (no clock, no host), so it is part of the
byte-identical output of a seeded export.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from .dedup import NUM_PERM, SHINGLE
from .formats import MODELS, features
from .model import ExportOptions, Item, TrialView
from .splits import SPLITS
from ..store.provenance import REPLAY, Provenance
from .trust import ENERGY_BASIS, VERDICT_BASIS

MANIFEST = "manifest.jsonl"

FORMAT_TEXT = {
    "openai-sft": "OpenAI chat fine-tuning lines `{\"messages\": [system, user, assistant]}`. The user message is "
                  "the trial's zero-shot refactoring request (the source code and the platform) with the source's "
                  "measured profile; the assistant message is the best screened candidate of the trial: a short "
                  "description and every file in full. Verdicts and provenance are in `manifest.jsonl`.",
    "openai-dpo": "OpenAI preference lines `{\"input\": {\"messages\"}, \"preferred_output\", "
                  "\"non_preferred_output\"}` for one prompt: preferred = a screened candidate that saves energy; "
                  "non-preferred = a failed one (an integrity failure or a build/run error) or a passing one with "
                  "higher energy. Verdicts and provenance are in `manifest.jsonl`.",
    "trl-sft": "TRL conversational prompt-completion (`prompt`, `completion` as role/content lists), with "
               "provenance and verdict columns.",
    "trl-dpo": "TRL conversational preference (`prompt`, `chosen`, `rejected`), with both verdicts, the reason the "
               "rejected answer is worse (`integrity`, `error`, `higher_energy`) and the energies.",
    "trl-kto": "TRL conversational unpaired preference (`prompt`, `completion`, `label`): true for screened "
               "candidates that save energy, false for failed ones (integrity failures are kept as labelled "
               "negatives, `reason = integrity`) and for passing ones that save nothing.",
    "trajectory": "One record per trial: every journalled step in order (LLM calls with their messages and "
                  "replies, candidates with their screening verdicts, findings and energies, plans, context), "
                  "for agentic training; `best_candidate` and `reduction` are this export's pick under its "
                  "filters, `trial_*` the trial's own result.",
}
POLICY_TEXT = {
    "recorded": "the trial's own screening verdict",
    "strict": "the trial's verdict, plus a VALID judge, a clean verifier (no warning) and no held finding",
    "judge_and_verifier": "judge VALID and verifier pass/warn, recomputed",
    "verifier": "verifier pass/warn, recomputed",
    "judge": "judge VALID, recomputed (the original paper's rule)",
}


# Hugging Face's size buckets, by upper bound
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def size_category(n: int) -> str:
    return next((name for limit, name in _SIZES if n < limit), "1B<n<10B")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _study_name(views: list[TrialView]) -> str:
    for v in views:
        if v.t.summary is not None and v.t.summary.study:
            return v.t.summary.study
        if "/" in v.t.trial_id:
            return v.t.trial_id.split("/", 1)[0]
    return "study"


def front_matter(opts: ExportOptions, by_split: dict[str, list[Item]], views: list[TrialView],
                 files: dict[str, str]) -> dict[str, Any]:
    n = sum(len(v) for v in by_split.values())
    platforms = sorted({it.platform for lst in by_split.values() for it in lst})
    kind = {"openai-sft": "sft", "trl-sft": "sft", "openai-dpo": "dpo", "trl-dpo": "dpo", "trl-kto": "kto",
            "trajectory": "agent-trajectories"}[opts.format]
    return {
        "license": opts.license,
        "language": ["en"],
        "pretty_name": f"lassi-batch {_study_name(views)}: energy-saving refactorings ({opts.format})",
        "tags": ["code", "energy-efficiency", "hpc", "lassi-ee", kind, *platforms],
        "task_categories": ["text-generation"],
        "size_categories": [size_category(n)],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": f} for s, f in files.items()]}],
        "dataset_info": {"config_name": "default", "features": features(MODELS[opts.format])},
    }


def body(opts: ExportOptions, by_split: dict[str, list[Item]], split_of: dict[str, str], views: list[TrialView],
         skipped: list[str], dropped: dict[str, int], redactions: dict[str, int], files: dict[str, str]) -> str:
    items = [it for s in SPLITS for it in by_split[s]]
    used = {it.manifest["trial_file"] for it in items}
    vs = [v for v in views if v.t.rel_path in used]
    n = len(items)
    out = [f"# lassi-batch {_study_name(views)}: energy-saving refactorings ({opts.format})", ""]
    out.append(f"{n} records from {len(used)} trials of {len({it.app for it in items})} applications, exported by "
               f"lassi-batch {__version__} (`lassi-batch export --format {opts.format} --seed {opts.seed}`). "
               "Each trial is one run of the LASSI-EE method: an LLM refactors a program for lower energy, every "
               "candidate is built, run, screened and measured on the real device.")
    out += ["", "## Format", "", FORMAT_TEXT[opts.format], ""]
    out += ["## Splits", "",
            "Splits are made by application: all records of an app are in one split, so no app is on two sides.",
            f"Seed {opts.seed}; target fractions train/validation/test = "
            f"{'/'.join(f'{x:g}' for x in opts.fractions)} of the records."]
    if opts.holdout_apps:
        out.append("Held out for test (whole families): " + ", ".join(f"`{p}`" for p in opts.holdout_apps) + ".")
    out.append("")
    rows = []
    for s in SPLITS:
        apps = sorted(a for a, x in split_of.items() if x == s)
        if by_split[s]:
            rows.append([s, files[s], len(by_split[s]), ", ".join(apps)])
    out += [_table(["split", "file", "records", "apps"], rows), ""]
    per = Counter((s, it.platform) for s in SPLITS for it in by_split[s])
    plats = sorted({p for _, p in per})
    out += ["Records per split and platform:", "",
            _table(["split", *plats], [[s, *[per[(s, p)] for p in plats]] for s in SPLITS if by_split[s]]), ""]
    out += ["## Devices, meters and models", ""]
    dev = Counter((v.t.platform, v.t.device or "unknown", v.t.meter or "unknown", v.t.estimate) for v in vs)
    out += [_table(["platform", "device", "meter", "energy", "trials"],
                   [[p, d, m, "ESTIMATE (model, not a sensor)" if e else "measured", c]
                    for (p, d, m, e), c in sorted(dev.items())]), ""]
    models = Counter((v.t.generator_model or "unknown", v.t.judge_model or "unknown", v.t.llm_backend or "unknown")
                     for v in vs)
    out += [_table(["generator model", "judge model", "LLM backend", "trials"],
                   [[g, j, b, c] for (g, j, b), c in sorted(models.items())]), ""]
    prov = Provenance.of(v.t.summary for v in vs if v.t.summary is not None)
    out += [f"- {line}" for line in prov.lines()] + [""]
    if any(v.t.estimate for v in vs):
        out += ["**Some energies are estimates** from a labelled model (no power sensor was available); "
                "do not read them as measurements.", ""]
    if any(v.t.llm_backend == REPLAY for v in vs):
        out += ["**Replayed LLM answers**: the candidates of "
                f"{sum(v.t.llm_backend == REPLAY for v in vs)} of these trials were read from recorded transcripts "
                "(a replay), not generated by a live model during the trial; they were exported on request "
                "(`--include-replayed`). No model name is given for them: the transcripts are the source.", ""]
    out += ["## Screening policy", "",
            "- Only candidates that passed screening, whose energy is known on the trial's energy basis and that "
            "save energy against the source are ever preferred (SFT answers, DPO chosen, KTO true).",
            "- A candidate with an integrity finding (measured work removed, a wrong result, the judge's INVALID) "
            "is never preferred, whatever the pass policy; it is kept as a labelled negative.",
            "- When both sides of a preference pair passed, the preferred side has the lower energy"
            + (" beyond both noise intervals." if opts.significant else "."),
            f"- Pass policy of this export: `{opts.pass_policy}` ({POLICY_TEXT[opts.pass_policy]}).",
            "- Pass policies the trials ran with: "
            + ", ".join(f"`{k}` ({c})" for k, c in sorted(Counter(v.t.pass_policy for v in vs).items())) + ".",
            "- Verdict basis: " + "; ".join(f"{VERDICT_BASIS[k]}: {c} trials"
                                            for k, c in sorted(Counter(v.verdict_basis for v in vs).items())) + ".",
            "- Energy basis: " + "; ".join(f"{ENERGY_BASIS[k]}: {c} trials"
                                           for k, c in sorted(Counter(v.energy_basis for v in vs).items())) + ".",
            f"- Filters: minimum reduction {opts.min_reduction:g} of the source's energy"
            + ("; only savings outside the noise interval" if opts.significant else "")
            + (f"; platforms {', '.join(opts.platforms)}" if opts.platforms else "")
            + (f"; models {', '.join(opts.models)}" if opts.models else "")
            + (f"; apps {', '.join(opts.apps)}" if opts.apps else "") + ".", ""]
    near = "off" if opts.near_dup_threshold is None else f"Jaccard >= {opts.near_dup_threshold:g}"
    out += ["## Deduplication", "",
            "Records are compared by their code with comments and whitespace removed: exact copies are dropped, "
            f"then near copies (datasketch MinHash LSH, {NUM_PERM} permutations, token {SHINGLE}-grams, {near}), "
            "before the split, so that no copy straddles two splits.",
            f"Dropped: {dropped.get('exact duplicates', 0)} exact, {dropped.get('near duplicates', 0)} near.", ""]
    red = ", ".join(f"{k} {c}" for k, c in sorted(redactions.items()) if c) or "none"
    out += ["## Privacy", "",
            "API keys, host and user names and absolute paths are removed from every record (paths keep their "
            f"file name), and every file was scanned before it was written. Redactions: {red}.", ""]
    out += ["## Provenance", "",
            f"`{MANIFEST}` has one line per record (`split`, `file`, `line`, `id`): the trial file (relative to the study "
            "folder), the candidate ids and step keys, their verdicts, findings and energies, and the paths of "
            "their measurement groups inside the trial file.", ""]
    if skipped:
        out += ["## Trials not used", ""] + [f"- {s}" for s in skipped] + [""]
    return "\n".join(out)


def write_card(folder: Path, opts: ExportOptions, by_split: dict[str, list[Item]], split_of: dict[str, str],
               views: list[TrialView], skipped: list[str], dropped: dict[str, int], redactions: dict[str, int],
               files: dict[str, str]) -> None:
    meta = yaml.safe_dump(front_matter(opts, by_split, views, files), sort_keys=False, allow_unicode=True)
    text = "---\n" + meta + "---\n\n" + body(opts, by_split, split_of, views, skipped, dropped, redactions, files)
    (folder / "README.md").write_text(text, encoding="utf-8")
