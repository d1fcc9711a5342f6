"""Summarise a training log: each loss averaged over the first and the last steps of the run; with --png, also draw
every loss against the step (one panel per loss and the total: the logged values faint, their moving average over
--window steps bold). Several logs are summarised one after the other and drawn on the same panels, one colour each.

    python scripts/show_losses.py runs/demo/pretrain/train_log.jsonl [--window 10]
    python scripts/show_losses.py runs/demo/pretrain/train_log.jsonl --png runs/demo/losses_pretrain.png
    python scripts/show_losses.py runs/a/train_log.jsonl runs/b/train_log.jsonl --png compare.png
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from src.commands import InputError, OutsideError, run_main  # noqa: E402

SKIP = {"step", "epoch", "lr", "loss_scale", "grad_norm", "overflow", "step_time", "samples_per_s"}
PANEL_INCHES = (3.6, 2.6)  # width, height of one loss's panel
TITLE_INCHES = 0.5         # the figure's title above the panels
COLUMNS = 4                # panels per row at most
DPI = 100


def summarise(entries: list, window: int) -> list:
    """[(name, mean over the first `window` steps, mean over the last `window` steps)] for every logged loss."""
    names = loss_names(entries)
    head, tail = entries[:window], entries[-window:]
    return [(n, sum(e[n] for e in head) / len(head), sum(e[n] for e in tail) / len(tail)) for n in names]


def loss_names(entries: list) -> list:
    """The logged losses in the log's order: the total ("loss") first, then each task's."""
    return [k for k in entries[0] if k not in SKIP]


def read_log(path) -> list:
    """The logged steps of a train_log.jsonl; an InputError names the line that is not one."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"training log not found: {path}")
    entries = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not JSON ({e.msg}); is it a train_log.jsonl?") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("step_time"), (int, float)):
                raise InputError(f"{path}:{n}: not a logged step (no step_time); is it a train_log.jsonl?")
            entries.append(entry)
    if not entries:
        raise InputError(f"{path}: no steps logged")
    return entries


def moving_average(values, window: int):
    """The trailing mean of the last `window` finite values at each step (fewer at the start); steps whose value is
    not finite (an overflow) are left out of the means."""
    import numpy as np
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    sums = np.cumsum(np.where(finite, values, 0.0))
    counts = np.cumsum(finite)
    w = max(1, window)
    sums[w:], counts[w:] = sums[w:] - sums[:-w].copy(), counts[w:] - counts[:-w].copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def figure_inches(panels: int) -> tuple:
    """(width, height) of the figure of `panels` loss panels, in inches (x DPI: its PNG's size in pixels)."""
    columns = min(COLUMNS, panels)
    rows = math.ceil(panels / columns)
    return PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows + TITLE_INCHES


def draw_losses(runs: list, window: int, out) -> tuple:
    """A PNG at `out` (written under a temporary name, then renamed) of each loss of `runs` ([(label, entries)])
    against the step; returns its size in pixels (width, height)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from src.files import write_atomic
    names = []
    for _, entries in runs:
        names += [n for n in loss_names(entries) if n not in names]
    width, height = figure_inches(len(names))
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    columns = min(COLUMNS, len(names))
    rows = math.ceil(len(names) / columns)
    fig.subplots_adjust(left=0.5 / width, right=0.98, bottom=0.45 / height,
                        top=1 - (TITLE_INCHES + 0.25) / height, wspace=0.3, hspace=0.55)
    title = runs[0][0] if len(runs) == 1 else " vs ".join(label for label, _ in runs)
    fig.suptitle(f"{title}: losses against the step (bold: mean of the last {window})", y=1 - 0.12 / height,
                 fontsize=10)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, columns, i + 1)
        for r, (label, entries) in enumerate(runs):
            logged = [e for e in entries if name in e]
            if not logged:
                continue
            steps = np.array([e["step"] for e in logged], np.float64)
            values = np.array([e[name] for e in logged], np.float64)
            colour = f"C{r % 10}"
            ax.plot(steps, values, color=colour, alpha=0.35, linewidth=0.8)
            ax.plot(steps, moving_average(values, window), color=colour, linewidth=2.0,
                    label=label if len(runs) > 1 else None)
        ax.set_title("total" if name == "loss" else name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if i // columns == rows - 1 or i + columns >= len(names):
            ax.set_xlabel("step", fontsize=8)
        if i == 0 and len(runs) > 1:
            ax.legend(fontsize=6)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda partial: fig.savefig(partial, format="png", dpi=DPI))
    return round(width * DPI), round(height * DPI)


def print_summary(entries: list, window: int) -> None:
    w = min(window, max(1, len(entries) // 2))
    timed = entries[1:] or entries
    print(f"{len(entries)} steps, {sum(e['step_time'] for e in timed) / len(timed):.2f} s/step after the first; "
          f"mean of steps 1-{w} vs the last {w}:")
    print(f"{'loss':>10} {'first':>9} {'last':>9} {'change':>8}")
    try:
        rows = summarise(entries, w)
    except (KeyError, TypeError) as e:
        raise InputError(f"the logged steps differ in their losses ({e})") from None
    for name, first, last in rows:
        print(f"{name:>10} {first:9.4f} {last:9.4f} {100 * (last - first) / abs(first or 1):+7.1f}%")


def run_label(log) -> str:
    """A log's run folder (runs/demo/pretrain for runs/demo/pretrain/train_log.jsonl), relative to the current
    folder when it is below it."""
    parent = Path(log).resolve().parent
    try:
        return str(parent.relative_to(Path.cwd())) or parent.name
    except ValueError:
        return str(parent)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", nargs="+", help="train_log.jsonl of a run (several: summarised and drawn together)")
    ap.add_argument("--window", type=int, default=10, help="steps averaged: the summary's first and last, the "
                                                           "picture's moving average")
    ap.add_argument("--png", default=None, metavar="OUT.png", help="also draw every loss against the step there")
    args = ap.parse_args(argv)
    return run_main(lambda: show(args.log, args.window, args.png))


def show(logs: list, window: int, png) -> int:
    runs = []
    for log in logs:
        entries = read_log(log)
        if len(logs) > 1:
            print(f"{log}:")
        print_summary(entries, window)
        runs.append((run_label(log), entries))
    if png:
        if importlib.util.find_spec("matplotlib") is None:
            raise OutsideError("--png needs matplotlib: pip install -r requirements.txt")
        width, height = draw_losses(runs, max(1, window), png)
        print(f"losses: {png} ({width}x{height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
