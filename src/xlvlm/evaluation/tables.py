"""Plain-text tables of evaluation results: one formatter per task (rates as percentages)."""

from __future__ import annotations


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def signed_points(value) -> str:
    return "-" if value is None else f"{100 * value:+.1f}"


def table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """Columns padded to their widest cell; ``align`` has one ``l`` or ``r`` per column."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w) for c, w, a in zip(cells, widths, align)).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def top_answers(distribution: list[dict], k: int = 5) -> str:
    return ", ".join(f"{d['answer'] or '(empty)'} {pct(d['share'])}" for d in distribution[:k])


def format_vqa(result: dict) -> list[str]:
    lines = [f"VQA accuracy: {result['n']} predictions, {result['n_scored']} with references"]
    rows = [["all", str(result["n"]), pct(result["accuracy"]), top_answers(result["answer_distribution"])]]
    for kind, row in result["per_type"].items():
        rows.append([kind, str(row["n"]), pct(row["accuracy"]), top_answers(row["answer_distribution"])])
    lines += table(["answer type", "n", "accuracy", "most common answers"], rows, "lrrl")
    if result.get("accuracy_mean_over_types") is not None and len(result["per_type"]) > 1:
        lines.append(f"mean over answer types (the research code's overall): {pct(result['accuracy_mean_over_types'])}")
    targeted = result.get("targeted")
    if targeted:
        lines += ["", f"Targeted: {targeted['source']} -> {targeted['target']} "
                      f"({targeted['n_source']} questions with {targeted['source_kind'].replace('_', ' ')} {targeted['source']!r})",
                  f"success {pct(targeted['success'])} (baseline {pct(targeted['baseline_success'])})"]
        rows = [[kind, str(r["n"]), pct(r["accuracy"]), pct(r["baseline_accuracy"]), signed_points(r["accuracy_change"]), pct(r["unchanged"])]
                for kind, r in targeted["side_effects"].items()]
        overall = targeted["side_effects_overall"]
        if overall and len(rows) > 1:
            rows.append(["all others", str(overall["n"]), pct(overall["accuracy"]), pct(overall["baseline_accuracy"]),
                         signed_points(overall["accuracy_change"]), pct(overall["unchanged"])])
        if rows:
            lines += ["side effects (other answer types):"]
            lines += table(["answer type", "n", "accuracy", "baseline", "change (points)", "unchanged"], rows, "lrrrrr")
    return lines


def format_caption(result: dict) -> list[str]:
    metrics = result["metrics"]
    lines = [f"Caption metrics: {result['n']} predictions, {metrics['n_scored']} with reference captions"
             + (f" ({metrics['tokenizer']} tokenizer)" if metrics["tokenizer"] else "")]
    names = ["CIDEr-D", "BLEU-4", "ROUGE-L", "METEOR"]
    lines += table(names, [["-" if metrics[n] is None else f"{metrics[n]:.3f}" for n in names]], "rrrr")
    lines += ["", "class words in captions (share of captions with one; per caption; most common):"]
    rows = []
    for name, row in result["class_words"].items():
        ref = (result.get("reference_class_words") or {}).get(name)
        base = (result.get("baseline_class_words") or {}).get(name)
        top = ", ".join(f"{w} {c}" for w, c in list(row["counts"].items())[:5])
        rows.append([name, pct(row["share"]), "-" if row["per_text"] is None else f"{row['per_text']:.2f}",
                     pct(ref["share"]) if ref else "-", pct(base["share"]) if base else "-", top])
    lines += table(["class", "share", "per caption", "references", "baseline", "most common"], rows, "lrrrrl")
    return lines


def format_pope(result: dict) -> list[str]:
    lines = [f"POPE: {result['n']} predictions (positive = yes; {result['rule']})"]

    def row(name, r):
        return [name, str(r["n"]), pct(r["accuracy"]), pct(r["precision"]), pct(r["recall"]), pct(r["f1"]),
                pct(r["yes_ratio"]), pct(r["label_yes_ratio"])]

    rows = [row(split, r) for split, r in result["per_split"].items()] + [row("all", result["overall"])]
    return lines + table(["split", "n", "accuracy", "precision", "recall", "F1", "yes-ratio", "labels yes"], rows,
                          "lrrrrrrr")


def format_safety(result: dict) -> list[str]:
    lines = [f"Refusal rate: {result['n']} predictions, {result['refusals']} refuse or warn "
             f"({len(result['phrases'])} phrases, see docs/hallucination.md)"]
    rows = [[name, str(r["n"]), pct(r["refusal_rate"])] for name, r in result["per_scenario"].items()]
    rows.append(["all", str(result["n"]), pct(result["refusal_rate"])])
    lines += table(["scenario", "n", "refusal rate"], rows, "lrr")
    if result["phrase_counts"]:
        lines.append("most matched: " + ", ".join(f"{p!r} {c}" for p, c in list(result["phrase_counts"].items())[:5]))
    return lines
