"""Each task's result beside its baselines, from the evaluation JSONs of a run folder (eval.py writes
eval_<task>_<split>.json next to each checkpoint: runs/demo/retrieval/eval_retrieval_val.json, ...): a Markdown table
(task | metric | measured | baseline) on stdout, and with --png a bar chart, one panel per metric, one bar group per
task (or direction, input set, question form): the measured number beside its baselines (frozen-feature heads,
nearest neighbour, majority answer, chance, mean colour). A task whose JSON is missing is left out and named on stderr.

    python scripts/show_results.py runs/demo
    python scripts/show_results.py runs/demo --png runs/demo/results.png --json runs/demo/results.json
    python scripts/show_results.py runs/demo --split val --recall 1
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from src.commands import InputError, OutsideError, run_main  # noqa: E402

# eval.py's tasks in the order they are shown, each with what it is called here
TASKS = {"retrieval": "retrieval", "probe": "linear probe", "caption": "captioning (image)",
         "asr": "speech recognition (audio)", "caption_ia": "text from image+audio", "t2i": "text-to-image",
         "vqa": "VQA", "dvae": "dVAE reconstruction"}
PANEL_INCHES = (6.4, 3.2)  # one panel; a wide one spans both columns
COLUMNS = 2
WIDE = 4                   # a panel of more bar groups than this gets a row of its own
DPI = 100
MEASURED = "measured"
BASELINE_COLOURS = ("C1", "C2", "C4", "C5", "C3", "C6")


def find_reports(run_dir, split: str) -> tuple:
    """({task: (path, report)} of the eval_<task>_<split>.json found in `run_dir` or one folder below it (the newest
    where several are), [tasks without one])."""
    run_dir = Path(run_dir)
    found, missing = {}, []
    for task in TASKS:
        name = f"eval_{task}_{split}.json"
        paths = [p for p in [run_dir / name, *sorted(run_dir.glob(f"*/{name}"))] if p.is_file()]
        if not paths:
            missing.append(task)
            continue
        path = max(paths, key=lambda p: p.stat().st_mtime)
        found[task] = (path, json.loads(path.read_text(encoding="utf-8")))
    return found, missing


def group(label: str, measured: float, baselines: list) -> dict:
    """One bar group: the measured number and its baselines [(name, value)], the one to beat first."""
    return {"label": label, "measured": float(measured),
            "baselines": [{"name": n, "value": float(v)} for n, v in baselines if v is not None]}


def panel(task: str, title: str, metric: str, digits: int, groups: list, higher_is_better: bool = True) -> dict:
    """One chart panel and its rows of the table: `task` names the rows (before each group's label)."""
    return {"task": task, "title": title, "metric": metric, "digits": digits, "higher_is_better": higher_is_better,
            "groups": groups}


def retrieval_panels(report: dict, recall: int) -> list:
    """R@K of every direction (two-stage ranking) beside the frozen-feature heads (when evaluated) and chance."""
    k = f"R@{recall}"
    groups = [group(direction, r["two_stage"][k],
                    [("frozen-feature heads", r["baseline"][k] if "baseline" in r else None),
                     ("chance", r["chance"][k])])
              for direction, r in report["directions"].items()]
    return [panel("retrieval", f"retrieval, {report.get('items', '?')} items", f"{k} (%)", 1, groups)]


def probe_panels(report: dict) -> list:
    groups = [group(name, r["mAP"], [("chance", r["chance_mAP"])]) for name, r in report["inputs"].items()]
    return [panel("linear probe", "linear probe (frozen model), per input set", "mAP (%)", 2, groups)]


def generation_groups(reports: dict) -> list:
    """(CIDEr-D panel, WER panel) of the text generation tasks, each beside the nearest training caption."""
    cider, wer = [], []
    for task, report in reports.items():
        label = TASKS[task]
        near = report.get("nearest_neighbour", {})
        cider.append(group(label, report["metrics"]["CIDEr"], [("nearest training caption", near.get("CIDEr"))]))
        wer.append(group(label, report["metrics"]["WER"], [("nearest training caption", near.get("WER"))]))
    return [panel("", "text generation", "CIDEr-D", 3, cider),
            panel("", "text generation (lower is better)", "WER (%)", 1, wer, higher_is_better=False)]


def t2i_panels(report: dict) -> list:
    g = group(f"from {report.get('inputs', 'text')}", 100 * report["r_precision"],
              [(f"chance (1 of {report['candidates']})", 100 * report["chance"]),
               ("real thumbnails", 100 * report["r_precision_ground_truth"])])
    return [panel("text-to-image", f"text-to-image, {report['items']} captions", "R-precision (%)", 1, [g])]


def vqa_panels(report: dict) -> list:
    """Overall accuracy of each question form beside the majority answers (the vocabulary ceiling is no baseline)."""
    baselines = report.get("baselines", {})
    base = [(name, baselines[name]["overall"]) for name in ("majority answer per type", "majority answer")
            if name in baselines]
    groups = [group(f"{form} question", r["overall"], base) for form, r in report["forms"].items() if "overall" in r]
    return [panel("VQA", f"VQA, {report.get('items', '?')} questions", "accuracy (%)", 2, groups)] if groups else []


def dvae_panels(report: dict) -> list:
    g = group("argmax codes", report["psnr"], [("per-image mean colour", report["baseline_psnr"])])
    return [panel("dVAE", f"dVAE reconstruction, {report['items']} images", "PSNR (dB)", 2, [g])]


def result_panels(reports: dict, recall: int = 10, warn=lambda line: None) -> list:
    """The panels of the reports found ({task: report}), in TASKS' order; a report without the numbers its task's
    evaluation writes (another version's, a test split's VQA without answers) is left out and `warn`ed about."""
    generation = {t: reports[t] for t in ("caption", "asr", "caption_ia") if t in reports}
    builders = [(("retrieval",), lambda: retrieval_panels(reports["retrieval"], recall)),
                (("probe",), lambda: probe_panels(reports["probe"])),
                (tuple(generation), lambda: generation_groups(generation)),
                (("t2i",), lambda: t2i_panels(reports["t2i"])),
                (("vqa",), lambda: vqa_panels(reports["vqa"])),
                (("dvae",), lambda: dvae_panels(reports["dvae"]))]
    panels = []
    for tasks, build in builders:
        if not tasks or any(t not in reports for t in tasks):
            continue
        try:
            built = build()
        except (KeyError, TypeError) as e:
            warn(f"{', '.join(tasks)}: the results have no {e} (written by another version of eval.py?): left out")
            continue
        if not built:
            warn(f"{', '.join(tasks)}: no scored results (a split without answers?): left out")
        panels += built
    return panels


def beats(g: dict, higher_is_better: bool) -> bool:
    """Whether the measured number is better than the first baseline (the one it must beat)."""
    if not g["baselines"]:
        return False
    first = g["baselines"][0]["value"]
    return g["measured"] > first if higher_is_better else g["measured"] < first


def markdown_rows(panels: list) -> list:
    """The Markdown table's lines: task | metric | measured | baseline; bold where the first baseline is beaten."""
    lines = ["| task | metric | measured | baseline |", "|---|---|---|---|"]
    for p in panels:
        d = p["digits"]
        for g in p["groups"]:
            value = f"{g['measured']:.{d}f}"
            shown = f"**{value}**" if beats(g, p["higher_is_better"]) else value
            base = "; ".join(f"{b['name']} {b['value']:.{d}f}" for b in g["baselines"]) or "-"
            lines.append(f"| {(p['task'] + ' ' + g['label']).strip()} | {p['metric']} | {shown} | {base} |")
    return lines


def layout(panels: list) -> list:
    """(row, column, columns spanned) of each panel: two side by side, a panel of more than WIDE groups (retrieval's
    eight directions) on a row of its own."""
    places, row, column = [], 0, 0
    for p in panels:
        wide = len(p["groups"]) > WIDE
        if column and (wide or column == COLUMNS):
            row, column = row + 1, 0
        places.append((row, column, COLUMNS if wide else 1))
        column += COLUMNS if wide else 1
    return places


def figure_inches(panels: list) -> tuple:
    """(width, height) in inches of the chart of `panels` (x DPI: its PNG's size in pixels)."""
    places = layout(panels)
    rows = places[-1][0] + 1 if places else 0
    return PANEL_INCHES[0] * COLUMNS, PANEL_INCHES[1] * rows + 0.5


def bar_colour(name: str, colours: dict) -> str:
    """The measured number blue, chance light grey, every other baseline its own colour in every panel."""
    if name == MEASURED:
        return "C0"
    if name.startswith("chance"):
        return "0.78"
    return colours.setdefault(name, BASELINE_COLOURS[len(colours) % len(BASELINE_COLOURS)])


def draw_results(panels: list, title: str, out) -> tuple:
    """The bar chart at `out` (written under a temporary name, then renamed); returns its size in pixels."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from src.files import write_atomic
    width, height = figure_inches(panels)
    places = layout(panels)
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(places[-1][0] + 1, COLUMNS, left=0.6 / width, right=1 - 0.15 / width,
                            bottom=0.75 / height, top=1 - 0.75 / height, wspace=0.18, hspace=0.6)
    fig.suptitle(f"{title}: each result beside its baselines", y=1 - 0.15 / height, fontsize=11)
    colours = {}
    for p, (row, column, span) in zip(panels, places):
        ax = fig.add_subplot(grid[row, column:column + span])
        names = []
        for g in p["groups"]:
            names += [b["name"] for b in g["baselines"] if b["name"] not in names]
        series = [(MEASURED, [g["measured"] for g in p["groups"]])]
        series += [(n, [next((b["value"] for b in g["baselines"] if b["name"] == n), np.nan) for g in p["groups"]])
                   for n in names]
        bar = min(0.8 / len(series), 0.3)
        x = np.arange(len(p["groups"]))
        for j, (name, values) in enumerate(series):
            drawn = ax.bar(x + (j - (len(series) - 1) / 2) * bar, values, bar, label=name,
                           color=bar_colour(name, colours))
            ax.bar_label(drawn, fmt=f"%.{p['digits']}f", fontsize=6, padding=1)
        labels = [g["label"] for g in p["groups"]]  # input sets such as text+image+audio are long
        slanted = len(labels) > 3 and (span == 1 or max(map(len, labels)) > 10)
        ax.set_xticks(x, labels, fontsize=7, rotation=20 if slanted else 0,
                      ha="right" if slanted else "center")
        ax.set_ylabel(p["metric"], fontsize=8)
        ax.set_title(p["title"], fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlim(-0.6, len(p["groups"]) - 0.4)
        top = max([v for _, values in series for v in values if np.isfinite(v)] + [0.0])
        ax.set_ylim(0, top * 1.45 or 1.0)  # room above the bars for their numbers and the legend
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.legend(fontsize=6, framealpha=0.8, loc="upper right", ncols=len(series) if span > 1 else 1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda partial: fig.savefig(partial, format="png", dpi=DPI))
    return round(width * DPI), round(height * DPI)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="the run folder whose stages eval.py wrote to (runs/demo)")
    ap.add_argument("--split", default="val", help="the evaluated split in the JSONs' names (default: val)")
    ap.add_argument("--recall", type=int, default=10, choices=(1, 5, 10), help="retrieval's R@K (default: 10)")
    ap.add_argument("--png", default=None, metavar="OUT.png", help="draw the bar chart there")
    ap.add_argument("--json", default=None, metavar="OUT.json", help="write the table's numbers there")
    args = ap.parse_args(argv)
    return run_main(lambda: show(args))


def show(args) -> int:
    if not Path(args.run_dir).is_dir():
        raise FileNotFoundError(f"run folder not found: {args.run_dir}")
    found, missing = find_reports(args.run_dir, args.split)
    for task in missing:
        print(f"show_results: no eval_{task}_{args.split}.json in {args.run_dir} or its folders: {TASKS[task]} left "
              "out", file=sys.stderr)
    if not found:
        raise InputError(f"no evaluation results in {args.run_dir} (run eval.py first)")
    panels = result_panels({task: report for task, (_, report) in found.items()}, args.recall,
                           lambda line: print(f"show_results: {line}", file=sys.stderr))
    if not panels:
        raise InputError(f"nothing to show from {args.run_dir}")
    print("\n".join(markdown_rows(panels)))
    if args.json:
        from src.files import write_text_atomic
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(
            {"run": str(args.run_dir), "split": args.split, "panels": panels, "missing": missing,
             "sources": {task: str(path) for task, (path, _) in found.items()}}, indent=1) + "\n")
        print(f"results JSON: {args.json}")
    if args.png:
        if importlib.util.find_spec("matplotlib") is None:
            raise OutsideError("--png needs matplotlib: pip install -r requirements.txt")
        title = Path(args.run_dir).resolve().name
        width, height = draw_results(panels, title, args.png)
        print(f"results chart: {args.png} ({width}x{height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
