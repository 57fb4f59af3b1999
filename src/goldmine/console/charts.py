"""Charts as inline SVG, drawn on the server: no chart library, no script, nothing fetched by the browser.

Each chart is an `<svg role="img">` with a `<title>` that says what it shows, and the page puts the same figures in
a table next to it, so a screen reader (or a test) reads numbers rather than shapes. Every label is escaped here;
the returned string is `Markup`, so the templates insert it as it is.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 34
PALETTE = ("#2b6cb0", "#dd6b20", "#2f855a", "#b83280", "#6b46c1", "#c53030", "#2c7a7b", "#975a16")


def _frame(title: str, body: list[str], legend: list[str]) -> Markup:
    items = "".join(
        f'<g transform="translate({LEFT + 150 * (i % 4)},{HEIGHT - 8 - 14 * (i // 4)})">'
        f'<rect width="10" height="10" y="-9" fill="{PALETTE[i % len(PALETTE)]}"/>'
        f'<text x="14" font-size="11">{escape(name[:22])}</text></g>'
        for i, name in enumerate(legend))
    return Markup(f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 14 * (max(len(legend), 1) - 1) // 4}" '
                  f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
                  f"<title>{escape(title)}</title>{''.join(body)}{items}</svg>")


def _axis(top: float, unit: str = "") -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM - 12
    out = [f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#999"/>',
           f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#999"/>']
    for frac in (0, 0.5, 1):
        y = TOP + plot_h * (1 - frac)
        value = top * frac
        label = f"{value:.3g}{unit}"
        out.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{escape(label)}</text>')
    return out


def stacked_bars(title: str, columns: list[str], series: dict[str, list[float]]) -> Markup:
    """One bar per column (e.g. a day), stacked by series (e.g. a model); `series[name][i]` is column i's part."""
    plot_h = HEIGHT - TOP - BOTTOM - 12
    totals = [sum(values[i] for values in series.values()) for i in range(len(columns))]
    top = max(totals, default=0) or 1
    step = (WIDTH - LEFT - RIGHT) / max(len(columns), 1)
    body = _axis(top)
    for i, column in enumerate(columns):
        x, base = LEFT + i * step + step * 0.15, TOP + plot_h
        for s, (name, values) in enumerate(series.items()):
            h = plot_h * values[i] / top
            if h > 0:
                base -= h
                body.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" '
                            f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(column)} {escape(name)}: '
                            f"{values[i]:g}</title></rect>")
        if len(columns) <= 16 or i % max(1, len(columns) // 8) == 0:
            body.append(f'<text x="{x + step * 0.35:.1f}" y="{TOP + plot_h + 12}" font-size="10" '
                        f'text-anchor="middle">{escape(column[-5:])}</text>')
    return _frame(title, body, list(series))


def lines(title: str, series: dict[str, list[float | None]], top: float | None = None) -> Markup:
    """One polyline per series over points 0..n-1 (None: no point there); `top` fixes the y range (e.g. 1)."""
    plot_h = HEIGHT - TOP - BOTTOM - 12
    values = [v for points in series.values() for v in points if v is not None]
    top = top or max(values, default=0) or 1
    n = max((len(points) for points in series.values()), default=0)
    step = (WIDTH - LEFT - RIGHT) / max(n - 1, 1)
    body = _axis(top)
    for s, (name, points) in enumerate(series.items()):
        color = PALETTE[s % len(PALETTE)]
        xy = [(LEFT + i * step, TOP + plot_h * (1 - v / top)) for i, v in enumerate(points) if v is not None]
        if len(xy) > 1:
            body.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                        f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in xy)}"/>')
        body.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>{escape(name)}</title></circle>'
                    for x, y in xy)
    return _frame(title, body, list(series))
