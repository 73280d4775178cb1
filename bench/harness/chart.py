"""The chart (``--chart``, default docs/bench.png): one panel per scenario, a bar per server.

Owns ``write_chart``. matplotlib is imported only when drawing, so that everything else runs
without it (the harness then skips the chart and says so). Must not measure, nor write
anything but the image.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .results import Run, summarise, summarise_loadgen
from .scenarios import SCENARIOS, loadgen_scenario, loadgen_scenarios
from .tables import ratio

SERVER_COLOURS = {
    "ferricorn": "#d9480f", "granian": "#1c7ed6", "uvicorn": "#37b24d", "hypercorn": "#ae3ec9",
    "gunicorn": "#f59f00", "hyper": "#868e96",
}


def write_chart(path: Path, data: dict) -> bool:
    """One panel per scenario with a bar per server (median req/s) and the baseline ratios."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("matplotlib is not installed: no chart", file=sys.stderr)
        return False
    settings = data["settings"]
    summary = summarise([Run(**r) for r in data["runs"]])
    baseline = settings["baseline"]
    # (title, {server: value}, ideal, {server: bar label suffix}): req/s per wrk scenario,
    # then events/s of the sse scenarios, tokens/s of the llm ones and KiB per connection of
    # idle-10k.
    panels: list[tuple[str, dict[str, float], float | None, dict[str, str]]] = []
    for name in settings["scenarios"]:
        values = {s: summary[(name, s)].rps for s in settings["servers"] if (name, s) in summary}
        if values:
            ideal = SCENARIOS[name].ideal_rps
            title = f"{name} (- - ideal {ideal:,.0f})" if ideal else name
            if SCENARIOS[name].kind == "ws":
                title = f"{name}: messages/s"
            panels.append((title, values, ideal, {}))
    wrk_panels = len(panels)
    loadgen = summarise_loadgen([Run(**r) for r in data["runs"]])
    for name in loadgen_scenarios("sse", settings["scenarios"]):
        values = {s: loadgen[(name, s)]["events_per_s"] for s in settings["servers"]
                  if (name, s) in loadgen}
        ideal = SCENARIOS[name].ideal_rps
        if values:
            panels.append((f"{name}: events/s (- - ideal {ideal / 1000:g}k)", values, ideal, {}))
    for name in loadgen_scenarios("llm", settings["scenarios"]):
        values = {s: loadgen[(name, s)]["tokens_per_s"] for s in settings["servers"]
                  if (name, s) in loadgen}
        ideal = SCENARIOS[name].ideal_rps
        if values:
            panels.append((f"{name}: tokens/s (- - ideal {ideal / 1000:g}k)", values, ideal, {}))
    if name := loadgen_scenario("idle", settings["scenarios"]):
        found = {s: loadgen[(name, s)] for s in settings["servers"] if (name, s) in loadgen}
        values = {s: g["kib_per_connection"] for s, g in found.items()}
        stalls = {s: f"\n({g['accepted']:,.0f} accepted)" for s, g in found.items()
                  if g["stalled_rounds"]}
        if values:
            panels.append((f"{name}: KiB/conn (lower is better)", values, None, stalls))
    if not panels:
        return False
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.4 * rows), squeeze=False)
    thousands = FuncFormatter(lambda v, _pos: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}")
    for ax, (title, by_server, ideal, suffixes) in zip(axes.flat, panels, strict=False):
        present = list(by_server)
        values = [by_server[s] for s in present]
        bars = ax.bar(present, values, color=[SERVER_COLOURS.get(s, "#495057") for s in present])
        for bar, value, server in zip(bars, values, present, strict=True):
            label = f"{value / 1000:.1f}k" if value >= 1000 else (
                f"{value:.0f}" if value >= 100 else f"{value:.3g}")
            ax.annotate(
                label + suffixes.get(server, ""),
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=8,
            )
        if ideal:
            ax.axhline(ideal, color="#495057", linestyle="--", linewidth=0.8)
        top = max(values + ([ideal] if ideal else []))
        ax.set_ylim(0, top * 1.2 if top > 0 else 1)
        ax.yaxis.set_major_formatter(thousands)
        ax.tick_params(axis="both", labelsize=8)
        ax.set_title(title, fontsize=10, fontweight="bold")
        if baseline in present:
            base = by_server[baseline]
            labels = [f"{baseline}/{s}: {ratio(base, by_server[s])}"
                      for s in present if s != baseline]
            ax.text(0.5, -0.14, "\n".join(labels), transform=ax.transAxes, ha="center",
                    va="top", fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    median = f"median of {settings['rounds']} round(s), one worker each"
    ws_panels = any(SCENARIOS[n].kind == "ws" for n in settings["scenarios"] if n in SCENARIOS)
    if len(panels) == wrk_panels and not ws_panels:
        suptitle = f"Requests/s, {median} (higher is better)"
    elif wrk_panels:
        suptitle = f"Requests/s unless the panel says otherwise, {median}"
    else:
        suptitle = median[0].upper() + median[1:]
    fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
