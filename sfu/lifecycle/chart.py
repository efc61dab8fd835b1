"""The cost report as a PNG: GB per tier and $/month per tier, each beside the all-Standard
figure. matplotlib (the `loadtest` or `test` extra) is imported only here."""

from __future__ import annotations

from pathlib import Path

from sfu.lifecycle.costs import CostReport


def write_chart(report: CostReport, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t.tier.value for t in report.tiers]
    colours = ["#d9534f", "#f0ad4e", "#5bc0de"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.bar(names, [t.gb for t in report.tiers], color=colours)
    left.bar(["all-Standard"], [report.gb], color="#777777")
    left.set_ylabel("GB (2^30 bytes)")
    left.set_title("Stored")
    for i, t in enumerate(report.tiers):
        left.annotate(f"{t.gb:,.0f}", (i, t.gb), ha="center", va="bottom")
    left.annotate(f"{report.gb:,.0f}", (3, report.gb), ha="center", va="bottom")
    bottom = 0.0
    for t, colour in zip(report.tiers, colours, strict=True):
        right.bar(["tiered"], [t.usd_month], bottom=[bottom], color=colour, label=t.tier.value)
        bottom += t.usd_month
    right.bar(["all-Standard"], [report.all_standard_usd_month], color="#777777")
    right.annotate(f"${report.usd_month:,.2f}", (0, report.usd_month), ha="center", va="bottom")
    right.annotate(
        f"${report.all_standard_usd_month:,.2f}",
        (1, report.all_standard_usd_month),
        ha="center",
        va="bottom",
    )
    right.set_ylabel("USD / month")
    right.set_title(f"Cost: {report.saving_ratio:.0%} saved")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
