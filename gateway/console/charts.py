"""Small charts drawn on the server, so pages need no JavaScript and print as they show: bar
tables (HTML labels, SVG bars) and stacked columns over time (SVG with a legend). Every chart has
a text alternative.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence

# Okabe-Ito: told apart by people with any common colour-vision deficiency
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#666666")
GLYPH = 7.2  # average width of a 13px sans-serif glyph


def _width(text: str) -> float:
    return len(text) * GLYPH


def bars(rows: Sequence[tuple[str, int]], title: str, colour: str = PALETTE[0]) -> str:
    """A table of label, bar, value, largest first as given. Labels are table cells, so they wrap
    instead of being cut; the bars are SVG, so they print even without background colours."""
    if not rows:
        return '<p class="empty">Nothing in this period.</p>'
    top = max(v for _, v in rows) or 1
    out = [f'<table class="bars"><caption>{html.escape(title)}</caption><tbody>']
    for label, value in rows:
        length = max(0.5, 100 * value / top)
        out.append(
            f'<tr><th scope="row">{html.escape(label)}</th><td class="bar">'
            f'<svg viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect width="{length:.2f}" height="10" fill="{colour}"/></svg></td>'
            f'<td class="value">{value:,}</td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)


def columns(by_bucket: dict[str, Counter[str]], title: str, unit: str) -> str:
    """Stacked columns over time, one colour per series (the largest seven, then 'other')."""
    if not by_bucket:
        return '<p class="empty">Nothing in this period.</p>'
    totals: Counter[str] = Counter()
    for counts in by_bucket.values():
        totals.update(counts)
    names = [n for n, _ in totals.most_common(7)]
    if len(totals) > len(names):
        names.append("other")
    buckets = sorted(by_bucket)
    top = max(sum(c.values()) for c in by_bucket.values()) or 1
    plot_h, left, bottom = 180.0, 56.0, 40.0
    step = max(8.0, min(48.0, 640.0 / len(buckets)))
    legend_w = sum(34 + _width(n) for n in names)
    width = max(left + step * len(buckets) + 16, left + legend_w)
    legend_y = plot_h + bottom + 8
    out = [
        f'<svg class="chart" viewBox="0 0 {width:.0f} {legend_y + 24:.0f}" '
        f'width="{width:.0f}" height="{legend_y + 24:.0f}" role="img" '
        f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>',
        f'<text x="{left - 6:.0f}" y="14" text-anchor="end">{top:,}</text>',
        f'<text x="{left - 6:.0f}" y="{plot_h + 4:.0f}" text-anchor="end">0</text>',
        f'<line x1="{left}" y1="{plot_h}" x2="{left + step * len(buckets):.0f}" '
        f'y2="{plot_h}" stroke="#999"/>',
    ]
    every = max(1, len(buckets) // 6)
    for i, bucket in enumerate(buckets):
        counts = by_bucket[bucket]
        x, y = left + i * step + 1, plot_h
        for j, name in enumerate(names):
            value = (
                counts.get(name, 0)
                if name != "other"
                else sum(v for k, v in counts.items() if k not in names)
            )
            if not value:
                continue
            h = plot_h * value / top
            y -= h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{step - 2:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{html.escape(bucket)}: '
                f"{html.escape(name)} {value:,} {unit}</title></rect>"
            )
        if i % every == 0:
            out.append(
                f'<text x="{x:.1f}" y="{plot_h + 16:.0f}" class="tick">'
                f"{html.escape(_tick(bucket))}</text>"
            )
    x = left
    for j, name in enumerate(names):
        out.append(
            f'<rect x="{x:.0f}" y="{legend_y:.0f}" width="12" height="12" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text x="{x + 16:.0f}" y="{legend_y + 11:.0f}">{html.escape(name)}</text>'
        )
        x += 16 + _width(name) + 18
    out.append("</svg>")
    return "".join(out)


def _tick(bucket: str) -> str:
    """`2026-11-30` as `30 Nov`; `2026-11-30T14` as `30 Nov 14h`."""
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    try:
        label = f"{int(bucket[8:10])} {months[int(bucket[5:7]) - 1]}"
    except (ValueError, IndexError):
        return bucket
    return label + (f" {bucket[11:13]}h" if len(bucket) > 10 else "")
