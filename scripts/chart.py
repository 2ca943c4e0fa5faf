#!/usr/bin/env python3
"""Chart echoes/s against connection count, one line per server, as SVG.

Reads `echo-bench pingpong` result lines from files or standard input and
writes an SVG (hand-written: no third-party packages) to standard output or
to --output. Lines that are not pingpong result lines are ignored, so whole
logs can be fed in.

Which server a line belongs to:
  * its `server=NAME` pair, which scripts/compare.sh adds; else
  * the name of the file it came from, without directory and extension;
  * else "server".

When a server has several lines for one connection count (several rounds),
the chart shows the best: interference on a shared machine only ever slows
a run down (see BENCHMARKS.md). If the lines mix message sizes or depths,
each combination gets its own line, labelled with them.

    scripts/chart.py results.txt > chart.svg
    scripts/compare.sh ... | scripts/chart.py --title "64 B ping-pong" -o chart.svg
"""

import argparse
import math
import os
import sys
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 80, 200, 50, 60
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def parse_line(line):
    """The key=value pairs of a result line, or None for any other line."""
    words = line.split()
    if "result" not in words:
        return None
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if sep:
            pairs[key] = value
    return pairs if pairs.get("mode") == "pingpong" else None


def read_points(sources):
    """{series label: {connections: best echoes/s}} from (label, lines)."""
    rows = []
    for default_label, lines in sources:
        for line in lines:
            pairs = parse_line(line)
            if pairs is None:
                continue
            try:
                conns = int(pairs["connections"])
                rate = float(pairs["echoes_per_sec"])
            except (KeyError, ValueError):
                continue
            if pairs.get("errors", "0") != "0":
                print(f"chart: skipping a run with errors: {line.strip()}",
                      file=sys.stderr)
                continue
            rows.append((pairs.get("server", default_label),
                         pairs.get("size", "?"), pairs.get("depth", "?"),
                         conns, rate))
    shapes = {(size, depth) for _, size, depth, _, _ in rows}
    series = {}
    for server, size, depth, conns, rate in rows:
        label = server if len(shapes) == 1 else f"{server} ({size} B, depth {depth})"
        best = series.setdefault(label, {})
        best[conns] = max(rate, best.get(conns, 0.0))
    return series, shapes


def nice_step(span, ticks=5):
    """A round step (1, 2 or 5 times a power of ten) giving about `ticks`."""
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def human(n):
    if n >= 1e6:
        return f"{n / 1e6:g}M"
    if n >= 1e3:
        return f"{n / 1e3:g}k"
    return f"{n:g}"


def svg(series, title):
    xs = sorted({c for points in series.values() for c in points})
    top = max(r for points in series.values() for r in points.values())
    step = nice_step(top * 1.05 or 1)
    ymax = step * math.ceil(top * 1.05 / step) or 1
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    log_x = len(xs) > 1 and xs[0] > 0 and xs[-1] / xs[0] >= 10

    def x_of(c):
        if len(xs) == 1:
            return LEFT + plot_w / 2
        if log_x:
            lo, hi = math.log10(xs[0]), math.log10(xs[-1])
            return LEFT + (math.log10(c) - lo) / (hi - lo) * plot_w
        return LEFT + (c - xs[0]) / (xs[-1] - xs[0]) * plot_w

    def y_of(r):
        return TOP + plot_h - r / ymax * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{LEFT + plot_w / 2}" y="25" text-anchor="middle" font-size="15">'
           f'{escape(title)}</text>']
    # Horizontal grid and y labels.
    tick = 0.0
    while tick <= ymax + step / 2:
        y = y_of(tick)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{human(tick)}</text>')
        tick += step
    # One x tick per connection count measured.
    for c in xs:
        x = x_of(c)
        out.append(f'<line x1="{x:.1f}" y1="{TOP + plot_h}" x2="{x:.1f}" y2="{TOP + plot_h + 5}" '
                   f'stroke="black"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 20}" text-anchor="middle">{c}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
               f'stroke="black"/>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 15}" text-anchor="middle">'
               f'connections{" (log scale)" if log_x else ""}</text>')
    out.append(f'<text transform="translate(20 {TOP + plot_h / 2}) rotate(-90)" '
               f'text-anchor="middle">echoes/s</text>')
    # One line per series, with a dot per point, and the legend.
    for i, (label, points) in enumerate(sorted(series.items())):
        colour = COLOURS[i % len(COLOURS)]
        coords = [(x_of(c), y_of(points[c])) for c in sorted(points)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (x, y), c in zip(coords, sorted(points)):
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                       f'<title>{escape(label)}: {c} connections, {points[c]:.0f}/s</title>'
                       f'</circle>')
        ly = TOP + 10 + i * 20
        out.append(f'<line x1="{WIDTH - RIGHT + 15}" y1="{ly}" x2="{WIDTH - RIGHT + 40}" '
                   f'y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{WIDTH - RIGHT + 46}" y="{ly + 4}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*",
                        help="files of result lines (default: standard input)")
    parser.add_argument("-o", "--output", help="write the SVG here (default: stdout)")
    parser.add_argument("--title", help="chart title")
    args = parser.parse_args()

    sources = []
    try:
        if args.files:
            for path in args.files:
                with open(path, encoding="utf-8", errors="replace") as f:
                    label = os.path.splitext(os.path.basename(path))[0]
                    sources.append((label, f.readlines()))
        else:
            sources.append(("server", sys.stdin.readlines()))
    except OSError as e:
        print(f"error: cannot read {e.filename}: {e.strerror.lower()}", file=sys.stderr)
        return 1

    series, shapes = read_points(sources)
    if not series:
        print("error: no pingpong result lines without errors in the input", file=sys.stderr)
        return 1
    title = args.title
    if title is None:
        if len(shapes) == 1:
            size, depth = next(iter(shapes))
            title = f"echo-bench pingpong, {size} B messages, depth {depth}"
        else:
            title = "echo-bench pingpong"
    text = svg(series, title)
    try:
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
    except OSError as e:
        print(f"error: cannot write {e.filename}: {e.strerror.lower()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
