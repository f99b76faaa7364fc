"""Turn a study's trial files into one fine-tuning dataset: records, dedup, splits, card, manifest.

Data flows one way: trial files (read by records.py) -> normalised verdicts (trust.py) -> records
of the chosen format -> redaction (safety.py) -> exact and near-duplicate removal (dedup.py) ->
splits by app (splits.py) -> files written to a staging folder, scanned byte by byte, then moved
into place. Nothing depends on the clock, the host or dict order, so the same study and seed give
byte-identical files.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..llm.prompts import GENERIC_WORDS, PLATFORM_WORDS
from .card import MANIFEST, write_card
from .dedup import Deduplicator
from .formats import validate_record
from .model import Cand, ExportOptions, ExportResult, Item, TrialView
from ..store.provenance import REPLAY
from .records import CandidateData, ExportError, TrialData, load_study
from .safety import Redactor
from .splits import SPLITS, assign_splits, matches
from .trust import (improvements, passes, reduction, screen, side_effects, significant_saving, significantly_lower,
                    uses_contract)

LOG_TAIL = 4000  # characters of a failed build's log (or a failed run's stderr) kept in a trajectory
DATA_DIR = "data"


# ---------------------------------------------------------------------------- prompts and answers


def _words(platform: str):
    return PLATFORM_WORDS.get(platform, GENERIC_WORDS)


def _fmt(x: float | None, unit: str) -> str:
    return "unknown" if x is None else f"{x:.4g} {unit}"


def build_prompt(t: TrialData, source: Cand) -> list[dict[str, str]] | None:
    """The trial's own zero-shot request (system prompt + the source) and its measured profile."""
    call = next((c for c in t.llm_calls if c.kind == "zero_shot" and c.messages), None)
    if call is None or not call.messages or call.messages[-1].get("role") != "user":
        return None
    msgs = [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in call.messages
            if m.get("role") in ("system", "user") and str(m.get("content", "")).strip()]
    if not msgs or msgs[-1]["role"] != "user":
        return None
    est = "; the figures come from a model, not a sensor" if t.estimate else ""
    s = source.data
    profile = (f"Measured profile of this program on the {t.device or _words(t.platform).device} "
               f"({t.meter or 'unknown'} meter{est}): energy {_fmt(source.s.energy_j, 'J')}, "
               f"runtime {_fmt(s.runtime_s, 's')}, average power {_fmt(s.power_w, 'W')}.")
    msgs[-1]["content"] = msgs[-1]["content"].rstrip() + "\n\n" + profile
    return msgs


def change_description(t: TrialData, c: CandidateData) -> str:
    """What the candidate changed: a self-correction's own text says how it fixed a build or run
    error, so the description of the attempt it corrected (the refactoring) is used."""
    d = c
    for _ in range(len(t.candidates)):
        parent = t.candidate(d.parent)
        if d.self_corrections <= 0 or parent is None or (parent.stage, parent.iteration) != (d.stage, d.iteration):
            break
        d = parent
    return d.description.strip() or c.description.strip()


def answer_text(c: CandidateData, platform: str, description: str) -> str:
    """The candidate as the pipeline asks for it: a short description, then every file in full."""
    fence = _words(platform).fence
    blocks = [f"```{fence}\n// File: {name}\n{text.rstrip()}\n```" for name, text in sorted(c.files.items())]
    desc = description or "Refactored version of the program."
    return desc + "\n\n" + "\n\n".join(blocks) + "\n"


def pair_difference(chosen: CandidateData, rejected: CandidateData) -> str:
    """What a preference pair teaches: the lines that differ between its two programs. Two pairs
    with the same difference are copies, even when both programs are near copies of others."""
    diff = difflib.unified_diff(_code(chosen).splitlines(), _code(rejected).splitlines(), lineterm="", n=0)
    return "\n".join(line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---")))


def _code(c: CandidateData) -> str:
    return "\n".join(f"// File: {n}\n{t}" for n, t in sorted(c.files.items()))


# ---------------------------------------------------------------------------- selection


def view_trial(t: TrialData, opts: ExportOptions) -> TrialView | None:
    """Screen every candidate of a trial; None when the trial has no measured source."""
    cv, ce = uses_contract(t.candidates)
    src_data = t.source
    if src_data is None:
        return None
    src_s = screen(src_data, cv, ce)
    source = Cand(src_data, src_s, src_s.verdict == "pass", 0.0, None)
    answers = []
    good = improvements(t.result, src_data, t.candidates, t.measure)
    for c in t.candidates:
        if c.stage not in (1, 3) or not c.files:
            continue
        s = screen(c, cv, ce)
        red = s.confirmed_reduction if s.energy_basis == "confirmed" else reduction(src_s.energy_j, s.energy_j)
        answers.append(Cand(c, s, passes(c, s, opts.pass_policy), red, significant_saving(s), c.id in good))
    return TrialView(t, source, answers, build_prompt(t, source),
                     "contract" if cv else "fallback", "confirmed" if ce else "measured")


def preferable(c: Cand, opts: ExportOptions) -> bool:
    """Screened, passing, counted by the trial itself as an improvement (`trust.improvements`),
    no files written that the source does not write, energy known on the trial's basis, and a
    saving that clears the filters."""
    if not c.ok or not c.improves or side_effects(c.s):
        return False
    if c.s.energy_j is None or c.reduction is None or c.s.integrity_failure:
        return False
    if c.reduction <= 0 or c.reduction < opts.min_reduction:
        return False
    return not opts.significant or c.significant is True


def _lower(a: Cand, b: Cand, opts: ExportOptions) -> bool:
    """a's energy is below b's (beyond both noise intervals when significance is asked for)."""
    if a.s.energy_j is None or b.s.energy_j is None or a.s.energy_basis != b.s.energy_basis:
        return False
    if opts.significant:
        return significantly_lower(a.s, b.s) is True
    return a.s.energy_j < b.s.energy_j


def _negative(c: Cand) -> bool:
    """A failed candidate that may be shown as a bad answer (held and unrun ones are undecided)."""
    return not c.ok and (c.s.verdict == "fail" or c.s.integrity_failure)


# ---------------------------------------------------------------------------- records


def _rid(fmt: str, rel: str, *parts: Any) -> str:
    return hashlib.sha256("|".join([fmt, rel, *map(str, parts)]).encode()).hexdigest()[:16]


def _meta(v: TrialView, rid: str) -> dict[str, Any]:
    t = v.t
    return {"id": rid, "app": t.app, "platform": t.platform, "model": t.generator_model, "device": t.device,
            "trial": t.rel_path, "energy_basis": v.energy_basis, "verdict_basis": v.verdict_basis, **_provenance(t)}


def _trial_result(t: TrialData) -> dict[str, Any]:
    """The trial's own headline (its summary, derived by store/headline.py), beside the export's pick."""
    s = t.summary
    return {"trial_best_candidate": s.best_candidate if s else -1, "trial_reduction": float(s.reduction) if s else 0.0,
            "trial_confirmed": bool(s.confirmed) if s else False}


def _provenance(t: TrialData) -> dict[str, Any]:
    """What every record says of where its numbers come from (store/provenance.py)."""
    return {"meter": t.meter, "estimate": t.estimate, "llm_backend": t.llm_backend, "software": t.software,
            "started": t.started}


def _ref(c: Cand) -> dict[str, Any]:
    return {"id": c.data.id, "key": c.data.key, "verdict": c.s.verdict, "reject_reason": c.s.reject_reason,
            "findings": [dict(f) for f in c.s.findings], "energy_j": c.s.energy_j,
            "ci": [c.s.ci_low, c.s.ci_high] if c.s.ci_low is not None else None,
            "reduction": c.reduction, "measurements": [m.path for m in c.data.measurements]}


def _manifest(fmt: str, v: TrialView, rid: str, roles: dict[str, Cand]) -> dict[str, Any]:
    t = v.t
    return {"id": rid, "format": fmt, "app": t.app, "platform": t.platform, "trial_file": t.rel_path,
            "trial_id": t.trial_id, "model": t.generator_model, "judge_model": t.judge_model, "device": t.device,
            **_provenance(t), "llm_source": t.llm_source, "finished": t.finished, "energy_basis": v.energy_basis,
            "verdict_basis": v.verdict_basis, "source": _ref(v.source),
            "candidates": {role: _ref(c) for role, c in roles.items()}}


def _answer(v: TrialView, c: Cand) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": answer_text(c.data, v.t.platform, change_description(v.t, c.data))}]


def sft_items(v: TrialView, opts: ExportOptions) -> list[Item]:
    good = [c for c in v.answers if preferable(c, opts)]
    if not good or v.prompt is None:
        return []
    best = min(good, key=lambda c: (-c.reduction, c.data.id))  # the largest (confirmed) saving
    rid = _rid(opts.format, v.t.rel_path, best.data.id)
    if opts.format == "openai-sft":
        rec: dict[str, Any] = {"messages": v.prompt + _answer(v, best)}
    else:
        rec = {**_meta(v, rid), "prompt": v.prompt, "completion": _answer(v, best), "verdict": "pass",
               "energy_j": best.s.energy_j, "reduction": best.reduction}
    return [Item(v.t.app, v.t.platform, (v.t.rel_path, best.data.id), rec, _code(best.data),
                 _manifest(opts.format, v, rid, {"completion": best}))]


def dpo_items(v: TrialView, opts: ExportOptions) -> list[Item]:
    if v.prompt is None:
        return []
    pairs: list[tuple[Cand, Cand, str]] = []
    for ch in sorted((c for c in v.answers if preferable(c, opts)), key=lambda c: c.data.id):
        for rj in sorted(v.answers, key=lambda c: c.data.id):
            if rj is ch:
                continue
            if _negative(rj):
                pairs.append((ch, rj, "integrity" if rj.s.integrity_failure else "error"))
            elif rj.ok and _lower(ch, rj, opts):
                pairs.append((ch, rj, "higher_energy"))
    if len(pairs) > opts.max_pairs_per_trial:
        pairs = sorted(random.Random(f"pairs:{opts.seed}:{v.t.rel_path}").sample(pairs, opts.max_pairs_per_trial),
                       key=lambda p: (p[0].data.id, p[1].data.id))
    items = []
    for ch, rj, why in pairs:
        rid = _rid(opts.format, v.t.rel_path, ch.data.id, rj.data.id)
        if opts.format == "openai-dpo":
            rec: dict[str, Any] = {"input": {"messages": v.prompt}, "preferred_output": _answer(v, ch),
                                   "non_preferred_output": _answer(v, rj)}
        else:
            rec = {**_meta(v, rid), "prompt": v.prompt, "chosen": _answer(v, ch),
                   "rejected": _answer(v, rj), "chosen_verdict": "pass",
                   "rejected_verdict": "pass" if rj.ok else "fail", "rejected_reason": why,
                   "chosen_energy_j": ch.s.energy_j, "rejected_energy_j": rj.s.energy_j,
                   "chosen_reduction": ch.reduction}
        man = _manifest(opts.format, v, rid, {"chosen": ch, "rejected": rj})
        man["rejected_reason"] = why
        items.append(Item(v.t.app, v.t.platform, (v.t.rel_path, ch.data.id, rj.data.id), rec,
                          pair_difference(ch.data, rj.data), man))
    return items


def kto_items(v: TrialView, opts: ExportOptions) -> list[Item]:
    if v.prompt is None:
        return []
    items = []
    for c in sorted(v.answers, key=lambda c: c.data.id):
        if preferable(c, opts):
            label, reason = True, "saves_energy"
        elif _negative(c):
            label, reason = False, ("integrity" if c.s.integrity_failure else "error")
        elif c.ok and c.reduction is not None and c.reduction <= 0:
            label, reason = False, "no_saving"
        else:
            continue  # a small or unproven saving, or an undecided verdict: neither good nor bad
        rid = _rid(opts.format, v.t.rel_path, c.data.id)
        rec = {**_meta(v, rid), "prompt": v.prompt, "completion": _answer(v, c), "label": label,
               "verdict": "pass" if c.ok else "fail", "reason": reason, "energy_j": c.s.energy_j,
               "reduction": c.reduction}
        man = _manifest(opts.format, v, rid, {"completion": c})
        man["label"] = label
        items.append(Item(v.t.app, v.t.platform, (v.t.rel_path, c.data.id), rec,
                          _code(c.data), man))
    return items


def _tail(text: str, n: int = LOG_TAIL) -> str:
    return text if len(text) <= n else "[...]\n" + text[-n:]


def trajectory_items(v: TrialView, opts: ExportOptions) -> list[Item]:
    t = v.t
    good = [c for c in v.answers if preferable(c, opts)]
    best = min(good, key=lambda c: (-c.reduction, c.data.id)) if good else None
    if opts.min_reduction > 0 and best is None:
        return []
    calls = {c.key: c for c in t.llm_calls}
    by_key = {c.data.key: c for c in [v.source, *v.answers]}
    cands = {c.key: c for c in t.candidates}
    plans = {p["key"]: p for p in t.plans}
    cv, ce = uses_contract(t.candidates)
    steps = []
    blank = {"llm_kind": "", "messages": [], "reply": "", "candidate": -1, "status": "", "verdict": "",
             "findings": [], "judge_verdict": "", "verifier_verdict": "", "energy_j": None, "runtime_s": None,
             "power_w": None, "reduction": None, "log": "", "text": ""}
    for st in t.steps:
        row = {"key": st["key"], "kind": st["kind"], **blank, "findings": []}
        if st["key"] in calls:
            c = calls[st["key"]]
            row.update(llm_kind=c.kind, reply=c.reply,
                       messages=[{"role": m["role"], "content": m["content"]} for m in c.messages
                                 if m.get("role") in ("system", "user", "assistant") and str(m.get("content", "")).strip()])
        elif st["key"] in cands:
            d = cands[st["key"]]
            cand = by_key.get(d.key)
            s = cand.s if cand else screen(d, cv, ce)
            red = cand.reduction if cand else None
            log = d.build_log if d.status == "build_failed" else (d.stderr if d.status == "run_failed" else "")
            row.update(candidate=d.id, status=d.status, verdict=s.verdict, findings=[dict(f) for f in s.findings],
                       judge_verdict=d.judge_verdict, verifier_verdict=d.verifier_verdict, energy_j=s.energy_j,
                       runtime_s=d.runtime_s, power_w=d.power_w, reduction=red, log=_tail(log))
        elif st["key"] in plans:
            row["text"] = plans[st["key"]]["text"]
        elif st["kind"] == "context":
            row["text"] = "\n\n".join(f"[{k}]\n{x}" for k, x in sorted(t.context.items()))
        steps.append(row)
    rid = _rid(opts.format, t.rel_path)
    rec = {"id": rid, "app": t.app, "platform": t.platform, "model": t.generator_model, "judge_model": t.judge_model,
           "device": t.device, "trial": t.rel_path, "energy_basis": v.energy_basis, "verdict_basis": v.verdict_basis,
           **_provenance(t),
           "source_energy_j": v.source.s.energy_j, "best_candidate": best.data.id if best else -1,
           "best_energy_j": best.s.energy_j if best else None, "reduction": best.reduction if best else None,
           **_trial_result(t),
           "stop_reason": str(t.result.get("stop_reason", "") or ""), "steps": steps}
    roles = {"best": best} if best else {}
    text = "\n".join(_code(c.data) for c in v.answers) or json.dumps(steps, sort_keys=True)
    return [Item(t.app, t.platform, (t.rel_path,), rec, text, _manifest(opts.format, v, rid, roles))]


BUILDERS = {"openai-sft": sft_items, "trl-sft": sft_items, "openai-dpo": dpo_items, "trl-dpo": dpo_items,
            "trl-kto": kto_items, "trajectory": trajectory_items}


# ---------------------------------------------------------------------------- the export


def _keep_trial(t: TrialData, opts: ExportOptions) -> bool:
    if opts.platforms and t.platform not in opts.platforms:
        return False
    if opts.models and not matches(t.generator_model, opts.models):
        return False
    return not opts.apps or matches(t.app, opts.apps)


def _redactor(trials: list[TrialData]) -> Redactor:
    prefixes = [p for t in trials for p in t.local_paths if p.count("/") >= 2]
    return Redactor.for_this_machine(
        extra_secrets=[s for t in trials for s in t.secret_values],
        extra_names=[n for t in trials for n in t.host_names],
        extra_prefixes=prefixes,
    )


def _check_out(out: Path, study_dir: Path) -> None:
    o, s = out.resolve(), study_dir.resolve()
    if o == s or s in o.parents and (s / "trials") in (o, *o.parents) or o in s.parents:
        raise ConfigError(f"output folder {out} would overwrite the study's files; choose another folder")
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"output {out} exists and is not a folder")
        entries = {p.name for p in out.iterdir()}
        if entries and not ({MANIFEST, "README.md"} <= entries and entries <= {MANIFEST, "README.md", DATA_DIR}):
            raise ConfigError(f"output folder {out} is not empty and holds no earlier export; choose another folder")


def export_study(study_dir: Path, out: Path, opts: ExportOptions) -> ExportResult:
    """Write the dataset of `study_dir` in `opts.format` to `out` (replacing an earlier export)."""
    study_dir, out = Path(study_dir), Path(out)
    if not study_dir.is_dir():
        raise ConfigError(f"study folder not found: {study_dir}")
    _check_out(out, study_dir)
    all_trials, skipped = load_study(study_dir)
    apps = sorted({t.app for t in all_trials})
    for p in opts.holdout_apps:
        if not any(matches(a, [p]) for a in apps):
            raise ConfigError(f"--holdout-apps: '{p}' matches no app of the study (apps: {', '.join(apps) or 'none'})")
    trials = [t for t in all_trials if _keep_trial(t, opts)]
    replayed = [t for t in trials if t.llm_backend == REPLAY]
    if replayed and not opts.include_replayed:
        raise ConfigError(f"{len(replayed)} of the {len(trials)} trials to export were answered by a replay of recorded "
                          f"transcripts ({replayed[0].generator_model}), not a live model; exporting them as training "
                          "data needs --include-replayed (the dataset card then says so)")
    redactor = _redactor(all_trials)
    dropped: Counter = Counter()
    items: list[Item] = []
    views = []
    for t in trials:
        v = view_trial(t, opts)
        if v is None or v.prompt is None:
            skipped.append(f"{t.rel_path}: no measured source or no recorded zero-shot request")
            continue
        views.append(v)
        items += BUILDERS[opts.format](v, opts)
    items.sort(key=lambda it: it.sort_key)
    # KTO: a good program and its cheating near copy are the lesson, so copies count per label
    dedupers: dict[str, Deduplicator] = {}
    kept: list[Item] = []
    for it in items:
        it.record = redactor.clean_obj(it.record)
        it.manifest = redactor.clean_obj(it.manifest)
        problems = validate_record(opts.format, it.record)
        if problems:
            raise ExportError(f"internal: record of {it.manifest['trial_file']} does not match {opts.format}: {problems[0]}")
        label = str(it.record.get("label", ""))
        if label not in dedupers:
            dedupers[label] = Deduplicator(opts.near_dup_threshold)
        dedup = dedupers[label]
        if dedup.offer(it.manifest["id"], redactor.clean(it.dedup_text)):
            kept.append(it)
    dropped["exact duplicates"] = sum(d.exact_dropped for d in dedupers.values())
    dropped["near duplicates"] = sum(d.near_dropped for d in dedupers.values())
    if not kept:
        why = (f"{len(all_trials)} finished trial(s) read, {len(trials)} after the platform/model/app filters, "
               f"{len(items)} record(s) before deduplication")
        raise ExportError(f"nothing to export in format {opts.format}: no record passes the filters ({why}); "
                          "nothing was written")
    sizes = Counter(it.app for it in kept)
    split_of = assign_splits(dict(sizes), opts.fractions, opts.seed, opts.holdout_apps)
    by_split: dict[str, list[Item]] = {s: [] for s in SPLITS}
    for it in kept:
        by_split[split_of[it.app]].append(it)
    for s, lst in by_split.items():
        random.Random(f"order:{opts.seed}:{s}").shuffle(lst)
    _write(out, study_dir, opts, by_split, split_of, views, skipped, dict(dropped), redactor)
    return ExportResult(out, {s: len(v) for s, v in by_split.items() if v}, skipped, dict(dropped))


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows)


def _write(out: Path, study_dir: Path, opts: ExportOptions, by_split: dict[str, list[Item]], split_of: dict[str, str],
           views: list[TrialView], skipped: list[str], dropped: dict[str, int], redactor: Redactor) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (stage / DATA_DIR).mkdir()
        manifest = []
        files: dict[str, str] = {}
        for split, lst in by_split.items():
            if not lst:
                continue
            # the name carries the content's hash: `datasets` caches a folder's data by its file
            # names, and would otherwise serve an earlier export written to the same folder
            text = _jsonl([it.record for it in lst])
            files[split] = f"{DATA_DIR}/{split}-{hashlib.sha256(text.encode()).hexdigest()[:10]}.jsonl"
            (stage / files[split]).write_text(text, encoding="utf-8")
            for line, it in enumerate(lst):
                manifest.append({"split": split, "file": files[split], "line": line, **it.manifest})
        (stage / MANIFEST).write_text(_jsonl(manifest), encoding="utf-8")
        write_card(stage, opts, by_split, split_of, views, skipped, dropped, dict(redactor.counts), files)
        problems = redactor.scan_tree(stage)
        if problems:
            raise ExportError("refusing to write the export, unsafe text found: " + "; ".join(problems[:5]))
        _swap_in(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _swap_in(stage: Path, out: Path) -> None:
    """Replace `out` by the finished staging folder (an earlier export is removed only after)."""
    os.chmod(stage, 0o755)
    if not out.exists():
        stage.rename(out)
        return
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    out.rename(old)
    stage.rename(out)
    shutil.rmtree(old, ignore_errors=True)
