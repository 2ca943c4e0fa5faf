#!/usr/bin/env python3
"""Chart echoes/s against connection count, one line per server, as SVG;
or, with --latency, latency against throughput from a rate sweep.

Reads `echo-bench pingpong` result lines from files or standard input and
writes an SVG (hand-written: no third-party packages) to standard output or
to --output. Lines that are not pingpong result lines are ignored, so whole
logs can be fed in. The default chart takes closed-loop lines only (no
`rate=`); --latency takes open-loop ones (`pingpong --rate`, as
scripts/sweep.sh runs them) and draws p99 (solid) and p50 (dashed) against
the rate achieved, on a log scale; a hollow point is a run where the
server did not keep up with the rate asked for.

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
    scripts/sweep.sh ... | scripts/chart.py --latency -o latency.svg
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
            if "rate" in pairs:
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


def read_latency(sources):
    """{series label: {requested rate: (achieved, p50, p99, kept_up)}}.

    Of several rounds at one rate, the one with the lowest p99 is kept:
    interference on a shared machine only ever adds latency.
    """
    rows = []
    for default_label, lines in sources:
        for line in lines:
            pairs = parse_line(line)
            if pairs is None or "rate" not in pairs:
                continue
            try:
                point = (float(pairs["rate"]), float(pairs["achieved_rate"]),
                         float(pairs["p50_us"]), float(pairs["p99_us"]))
            except (KeyError, ValueError):
                continue
            if pairs.get("errors", "0") != "0":
                print(f"chart: skipping a run with errors: {line.strip()}",
                      file=sys.stderr)
                continue
            rows.append((pairs.get("server", default_label), pairs.get("size", "?"),
                         pairs.get("connections", "?"), point,
                         pairs.get("kept_up") == "true"))
    shapes = {(size, conns) for _, size, conns, _, _ in rows}
    series = {}
    for server, size, conns, (rate, achieved, p50, p99), kept in rows:
        label = server if len(shapes) == 1 else f"{server} ({size} B, {conns} conns)"
        points = series.setdefault(label, {})
        if rate not in points or p99 < points[rate][2]:
            points[rate] = (achieved, p50, p99, kept)
    return series, shapes


def svg_latency(series, title):
    points = [p for s in series.values() for p in s.values()]
    xmax_raw = max(a for a, _, _, _ in points) * 1.05 or 1
    step = nice_step(xmax_raw)
    xmax = step * math.ceil(xmax_raw / step)
    lo = min(min(p50, p99) for _, p50, p99, _ in points)
    hi = max(max(p50, p99) for _, p50, p99, _ in points)
    ylo = 10 ** math.floor(math.log10(max(lo, 1)))
    yhi = 10 ** math.ceil(math.log10(max(hi, ylo * 10)))
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x_of(a):
        return LEFT + a / xmax * plot_w

    def y_of(us):
        us = min(max(us, ylo), yhi)
        return TOP + plot_h - (math.log10(us) - math.log10(ylo)) / \
            (math.log10(yhi) - math.log10(ylo)) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{LEFT + plot_w / 2}" y="25" text-anchor="middle" font-size="15">'
           f'{escape(title)}</text>']
    # One grid line per power of ten of latency.
    decade = ylo
    while decade <= yhi * 1.001:
        y = y_of(decade)
        label = f"{decade / 1000:g} ms" if decade >= 1000 else f"{decade:g} µs"
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        decade *= 10
    tick = 0.0
    while tick <= xmax + step / 2:
        x = x_of(tick)
        out.append(f'<line x1="{x:.1f}" y1="{TOP + plot_h}" x2="{x:.1f}" y2="{TOP + plot_h + 5}" '
                   f'stroke="black"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 20}" text-anchor="middle">'
                   f'{human(tick)}</text>')
        tick += step
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
               f'stroke="black"/>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 15}" text-anchor="middle">'
               f'echoes/s achieved (open loop, --rate)</text>')
    out.append(f'<text transform="translate(20 {TOP + plot_h / 2}) rotate(-90)" '
               f'text-anchor="middle">latency from due time (log scale)</text>')
    for i, (label, by_rate) in enumerate(sorted(series.items())):
        colour = COLOURS[i % len(COLOURS)]
        ordered = [by_rate[r] for r in sorted(by_rate)]
        for which, dash in ((2, ""), (1, ' stroke-dasharray="5,4"')):
            path = " ".join(f"{x_of(p[0]):.1f},{y_of(p[which]):.1f}" for p in ordered)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                       f'stroke-width="2"{dash}/>')
        for rate in sorted(by_rate):
            achieved, p50, p99, kept = by_rate[rate]
            fill = colour if kept else "white"
            note = "" if kept else ", did not keep up"
            out.append(f'<circle cx="{x_of(achieved):.1f}" cy="{y_of(p99):.1f}" r="3.5" '
                       f'fill="{fill}" stroke="{colour}" stroke-width="1.5">'
                       f'<title>{escape(label)}: {rate:.0f}/s asked, {achieved:.0f}/s achieved, '
                       f'p50 {p50:.0f} µs, p99 {p99:.0f} µs{note}</title></circle>')
        ly = TOP + 10 + i * 20
        out.append(f'<line x1="{WIDTH - RIGHT + 15}" y1="{ly}" x2="{WIDTH - RIGHT + 40}" '
                   f'y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{WIDTH - RIGHT + 46}" y="{ly + 4}">{escape(label)}</text>')
    ly = TOP + 10 + len(series) * 20 + 10
    out.append(f'<text x="{WIDTH - RIGHT + 15}" y="{ly + 4}">solid p99, dashed p50</text>')
    out.append(f'<text x="{WIDTH - RIGHT + 15}" y="{ly + 22}">hollow: did not keep up</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*",
                        help="files of result lines (default: standard input)")
    parser.add_argument("-o", "--output", help="write the SVG here (default: stdout)")
    parser.add_argument("--title", help="chart title")
    parser.add_argument("--latency", action="store_true",
                        help="latency against throughput, from pingpong --rate lines")
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

    if args.latency:
        series, shapes = read_latency(sources)
        if not series:
            print("error: no pingpong --rate result lines without errors in the input",
                  file=sys.stderr)
            return 1
        title = args.title
        if title is None:
            title = "echo-bench pingpong --rate: latency against throughput"
            if len(shapes) == 1:
                size, conns = next(iter(shapes))
                title += f", {size} B, {conns} connections"
        text = svg_latency(series, title)
    else:
        series, shapes = read_points(sources)
        if not series:
            print("error: no pingpong result lines without errors in the input",
                  file=sys.stderr)
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
