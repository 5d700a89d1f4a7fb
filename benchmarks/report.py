"""Turn a results document into Markdown tables and PNG charts.

A results document (``run.run_suite``) holds ``cells``: one per scenario,
server (or layer backend), parameters and system, each with its slices.
A cell's figure is the median of its slices; ratios compare systems within
one run, which is what a shared machine can measure honestly.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.servers import MALLOC_ENV, REPO_ROOT, SERVERS

__all__ = [
    "TARGETS",
    "Target",
    "charts",
    "compact",
    "document",
    "figure",
    "machine_info",
    "markdown",
]

NAMES = {
    "achannels": "achannels",
    "achannels-b": "achannels (B)",
    "channels": "Channels 4.3",
    "raw": "hand-written",
}
ORDER = ("achannels", "achannels-b", "channels", "raw")
PACKAGES = (
    "achannels", "channels", "channels-redis", "Django", "asgiref", "uvicorn",
    "hypercorn", "websockets", "wsproto", "httptools", "uvloop", "redis",
    "msgpack",
)  # fmt: skip


class Target:
    """A speed goal: ``achannels / baseline`` compared to ``bound``.
    ``sizes`` limits it to cells whose parameters take those values;
    ``metric`` ``p99`` compares the p99 latency instead of the throughput
    (then lower is better)."""

    def __init__(
        self,
        scenario: str,
        baseline: str,
        bound: float,
        *,
        where: Sequence[str] = (),
        members: int | None = None,
        sizes: dict[str, Sequence[int]] | None = None,
        lower_is_better: bool = False,
        metric: str = "throughput",
    ) -> None:
        self.scenario = scenario
        self.baseline = baseline
        self.bound = bound
        self.where = tuple(where)
        self.sizes = dict(sizes or {})
        if members is not None:
            self.sizes["members"] = (members,)
        self.metric = metric
        self.lower_is_better = lower_is_better or metric == "p99"

    def applies(self, scenario: str, where: str, params: dict[str, Any]) -> bool:
        return (
            scenario == self.scenario
            and (not self.where or where in self.where)
            and all(params.get(k) in v for k, v in self.sizes.items())
        )

    def met(self, ratio: float) -> bool:
        return ratio <= self.bound if self.lower_is_better else ratio >= self.bound

    def label(self) -> str:
        sign = "≤" if self.lower_is_better else "≥"
        what = "p99 " if self.metric == "p99" else ""
        return f"{what}{sign} {self.bound:.3g}"


TARGETS = (
    # One server process, the in-memory layer.
    Target("echo", "raw", 0.85, where=["uvicorn", "granian"]),
    Target("echo", "raw", 0.85, where=["hypercorn"], sizes={"clients": (1,)}),
    Target("connrate", "raw", 0.80),
    Target("fanout", "raw", 0.5, where=["uvicorn", "hypercorn"]),
    Target("fanout", "channels", 10),
    Target("memory", "raw", 1.15, lower_is_better=True),
    Target("layer.sendrecv", "channels", 3, where=["memory"]),
    Target("layer.group_send", "channels", 5, where=["memory"], members=1000),
    Target("layer.group_e2e", "channels", 5, where=["memory"], members=1000),
    Target("layer.sendrecv", "channels", 5, where=["redis"]),
    Target("layer.group_e2e", "channels", 1.5, where=["redis"]),
    # Production shape: several processes, Redis, big rooms.
    Target("echo", "raw", 0.90, where=["hypercorn"], sizes={"clients": (50, 500)}),
    Target("fanout", "raw", 0.85, where=["granian"]),
    Target("xfanout.flat", "channels", 5, where=["redis"]),
    Target("xfanout.rate", "channels", 1 / 3, where=["redis"], metric="p99"),
    Target("xfanout.flat", "channels", 1.5, where=["redis-pubsub"]),
    Target("xfanout.flat", "raw", 0.7, where=["redis-pubsub"]),
    Target("rooms", "channels", 3),
)

# -- figures --------------------------------------------------------------------


def _members(cell: dict[str, Any]) -> int:
    params = cell["params"]
    return int(params.get("clients", params.get("connections", 0)))


def rooms_sustained(cell: dict[str, Any]) -> float | None:
    """Many rooms: the highest offered rate (room messages/s) whose step
    kept the p99 bound; 0 when none did."""
    if not cell["slices"]:
        return None
    return max(
        (s["count"] / s["wall"] for s in cell["slices"] if s.get("kept")),
        default=0.0,
    )


def _rates(cell: dict[str, Any]) -> list[float]:
    out = []
    for s in cell["slices"]:
        if cell["scenario"] in ("fanout", "scale") and s.get("time_to_last_s"):
            size = _members(cell)
            out.append(size / statistics.median(s["time_to_last_s"]))
        elif s.get("wall"):
            out.append(s["count"] / s["wall"])
    return out


def figure(cell: dict[str, Any]) -> float | None:
    """The cell's headline number: operations/s (deliveries/s for fan-out,
    bytes per connection for memory), median over slices."""
    if cell.get("error") or not cell["slices"]:
        return None
    if cell["scenario"] == "memory":  # one slice per set of processes
        return float(statistics.median(s["per_connection"] for s in cell["slices"]))
    if cell["scenario"] == "rooms":
        return rooms_sustained(cell)
    rates = _rates(cell)
    return statistics.median(rates) if rates else None


def efficiency(cell: dict[str, Any]) -> float | None:
    """Operations per CPU-second of the system under test (the server, or
    the layer's process), median over slices. On a shared machine a pinned
    server loses the CPU to other processes now and then; its throughput
    drops, but the CPU it spends per operation does not, so this is the
    steadier figure."""
    if cell.get("error") or cell["scenario"] in ("memory", "rooms", "scale"):
        return None
    if cell["scenario"] == "layer.group_e2e" and cell["where"].startswith("redis"):
        return None  # the receivers are other processes: no one CPU to count
    values = [
        s["count"] / s["server_cpu"]
        for s in cell["slices"]
        if s.get("server_cpu") and s.get("count")
    ]
    return statistics.median(values) if values else None


def _slice_rates(cell: dict[str, Any]) -> list[float | None]:
    out: list[float | None] = []
    for s in cell["slices"]:
        if cell["scenario"] in ("fanout", "scale") and s.get("time_to_last_s"):
            out.append(_members(cell) / statistics.median(s["time_to_last_s"]))
        elif s.get("wall"):
            out.append(s["count"] / s["wall"])
        else:
            out.append(None)
    return out


def _slice_efficiencies(cell: dict[str, Any]) -> list[float | None]:
    if efficiency(cell) is None:
        return [None for _ in cell["slices"]]
    return [
        s["count"] / s["server_cpu"] if s.get("server_cpu") and s.get("count") else None
        for s in cell["slices"]
    ]


def _paired(ours: list[float | None], base: list[float | None]) -> float | None:
    """Median of the per-round ratios: slice i of each system comes from the
    same round, minutes apart at most, so pairing them cancels slow drift
    better than a ratio of two medians does."""
    ratios = [a / b for a, b in zip(ours, base, strict=True) if a and b]
    return statistics.median(ratios) if ratios else None


def compare(
    ours: dict[str, Any] | None, base: dict[str, Any] | None
) -> tuple[float | None, float | None]:
    """(throughput ratio, CPU-normalised ratio) of ``ours`` to ``base``: the
    median of per-round ratios when both have the same slices, else the
    ratio of the cells' figures. For memory: the per-connection ratio, None."""
    if ours is None or base is None or ours.get("error") or base.get("error"):
        return None, None
    if ours["scenario"] in ("memory", "rooms", "scale") or len(ours["slices"]) != len(
        base["slices"]
    ):
        return _ratio(figure(ours), figure(base)), _ratio(
            efficiency(ours), efficiency(base)
        )
    return (
        _paired(_slice_rates(ours), _slice_rates(base)),
        _paired(_slice_efficiencies(ours), _slice_efficiencies(base)),
    )


def compare_p99(
    ours: dict[str, Any] | None, base: dict[str, Any] | None
) -> float | None:
    """``ours``' p99 latency over ``base``'s (all slices pooled), a broadcast
    that never reached every member counting as infinitely late: 0 when only
    ``base``'s p99 is a lost one, None when ours is."""
    if ours is None or base is None or ours.get("error") or base.get("error"):
        return None
    mine, theirs = p99_counting_lost(ours), p99_counting_lost(base)
    if mine is None or theirs is None or math.isinf(mine):
        return None
    if math.isinf(theirs):
        return 0.0
    return _ratio(mine, theirs)


def _lost(cell: dict[str, Any]) -> str:
    """How late a lost broadcast is: later than the load generator waited."""
    waits = [s["timeout"] for s in cell["slices"] if s.get("timeout")]
    return f"> {max(waits) * 1000:,.0f}" if waits else "lost"


def p99_counting_lost(cell: dict[str, Any]) -> float | None:
    """The p99 (ms) of the time to the last member over every broadcast
    published, the lost ones (never complete within the timeout) as
    infinitely late; None without broadcasts."""
    stored = cell.get("latency_ms")
    if stored is not None and "p99_all" in stored:
        value = stored["p99_all"]
        return math.inf if value is None else float(value)
    pooled = sorted(v for s in cell["slices"] for v in s.get("latencies_us", []))
    lost = sum(s.get("lost", 0) for s in cell["slices"])
    total = len(pooled) + lost
    if not total:
        return None
    index = min(total - 1, round(0.99 * (total - 1)))
    return math.inf if index >= len(pooled) else pooled[index] / 1000.0


def _percentile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index] / 1000.0


LATENCY_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def latency_ms(cell: dict[str, Any], q: float) -> float | None:
    """The ``q`` quantile of the cell's latencies (all slices pooled), in ms."""
    stored = cell.get("latency_ms")
    if stored is not None:  # a compacted document: see compact()
        for name, quantile in LATENCY_QUANTILES.items():
            if quantile == q:
                value = stored.get(name)
                return None if value is None else float(value)
    pooled: list[int] = []
    for s in cell["slices"]:
        pooled += s.get("latencies_us", [])
    return _percentile(pooled, q)


def compact(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` with each cell's latency samples replaced by their
    quantiles, small enough to commit (the samples run to tens of MB)."""
    cells = []
    for cell in results["cells"]:
        cell = dict(cell)
        if any("latencies_us" in s for s in cell["slices"]):
            cell["latency_ms"] = {
                name: latency_ms(cell, quantile)
                for name, quantile in LATENCY_QUANTILES.items()
            }
            if cell["scenario"].startswith("xfanout."):
                p99 = p99_counting_lost(cell)
                cell["latency_ms"]["p99_all"] = (
                    None if p99 is None or math.isinf(p99) else p99
                )
            cell["slices"] = [
                {k: v for k, v in s.items() if k != "latencies_us"}
                for s in cell["slices"]
            ]
        cells.append(cell)
    return {**results, "cells": cells}


def cpu_pct(cell: dict[str, Any], key: str) -> float | None:
    values = [
        100 * s[key] / s["wall"]
        for s in cell["slices"]
        if s.get(key) is not None and s.get("wall")
    ]
    return statistics.median(values) if values else None


def time_to_last_ms(cell: dict[str, Any]) -> float | None:
    values = [t for s in cell["slices"] for t in s.get("time_to_last_s", [])]
    return 1000 * statistics.median(values) if values else None


# -- machine --------------------------------------------------------------------


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(server_cores: set[int], client_cores: set[int]) -> dict[str, Any]:
    """Where and with what the run happens: CPU, kernel, Python, package
    versions, commit, the core split and the load before the run."""
    model = ""
    with_cpuinfo = Path("/proc/cpuinfo")
    if with_cpuinfo.exists():
        for line in with_cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "server_cores": sorted(server_cores),
        "client_cores": sorted(client_cores),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "load_average_before": os.getloadavg(),
        "servers": SERVERS,
        "malloc": MALLOC_ENV,
    }


# -- Markdown -------------------------------------------------------------------

SECTIONS = (
    ("echo", "WebSocket echo", "round trips/s"),
    ("connrate", "Connection rate", "connect + accept + close per second"),
    ("fanout", "Group fan-out", "deliveries/s to every member of one room"),
    ("memory", "Idle memory", "server RSS per open WebSocket, KiB (lower is better)"),
    (
        "scale",
        "Broadcast to every idle connection",
        "deliveries/s (room members / time until the last one has the frame), "
        "as many members as one process may hold",
    ),
    (
        "xfanout.rate",
        "Cross-process broadcast, fixed rate",
        "deliveries/s, one publisher at a fixed rate into one room spread over "
        "the server processes; latency from publishing to the last member's "
        "receipt",
    ),
    (
        "xfanout.flat",
        "Cross-process broadcast, flat out",
        "deliveries/s, the publisher keeping a few broadcasts in flight",
    ),
    (
        "rooms",
        "Many rooms",
        "room messages/s sustained before the p99 delivery latency passes the "
        "bound (every client sending in turn)",
    ),
    ("layer.sendrecv", "Layer send + receive", "round trips/s"),
    ("layer.pingpong", "Layer ping-pong between two tasks", "round trips/s"),
    (
        "layer.group_send",
        "Layer group_send, sender's cost",
        "group_send calls/s with `others` unrelated channels alive",
    ),
    (
        "layer.group_e2e",
        "Layer group_send end to end",
        "group messages/s, until every member received it",
    ),
)


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0 and abs(value) < 100:
        digits = 1 if abs(value) >= 10 else 2  # small rates keep their digits
    return f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _group(cells: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(scenario, where, params) -> {system: cell}, in first-seen order."""
    grouped: dict[tuple[str, str, str], dict[str, Any]] = {}
    for cell in cells:
        key = (cell["scenario"], cell["where"], _params_key(cell["params"]))
        grouped.setdefault(key, {})[cell["system"]] = cell
    return grouped


def _params_key(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in params.items()
    )


def target_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (cell group, target) pair with its ratios and verdicts."""
    rows = []
    for (scenario, where, params), systems in _group(results["cells"]).items():
        ours = systems.get("achannels")
        if ours is None:
            continue
        for target in TARGETS:
            if not target.applies(scenario, where, ours["params"]):
                continue
            base = systems.get(target.baseline)
            if base is None:
                continue
            if target.metric == "p99":
                ratio, cpu_ratio = compare_p99(ours, base), None
            else:
                ratio, cpu_ratio = compare(ours, base)
            rows.append(
                {
                    "scenario": scenario,
                    "where": where,
                    "params": params,
                    "baseline": target.baseline,
                    "ratio": ratio,
                    "cpu_ratio": cpu_ratio,
                    "target": target.label(),
                    "bound": target.bound,
                    "met": None if ratio is None else target.met(ratio),
                    "cpu_met": None if cpu_ratio is None else target.met(cpu_ratio),
                }
            )
    return rows


def _mark(met: bool | None) -> str:
    return "" if met is None else ("✅" if met else "❌")


def markdown(results: dict[str, Any], notes: bool = True) -> str:
    """The results as Markdown: per scenario, each system's figure, the
    ratios and the target; then latency and CPU detail."""
    systems = [s for s in ORDER if s in results["systems"]]
    grouped = _group(results["cells"])
    out: list[str] = []
    for scenario, title, unit in SECTIONS:
        keys = [k for k in grouped if k[0] == scenario]
        if not keys:
            continue
        present = [s for s in systems if any(s in grouped[k] for k in keys)]
        out += [f"### {title}", "", f"{unit}.", ""]
        head = ["where", "size", *[NAMES[s] for s in present]]
        ratio_cols = [
            (mine, baseline, f"{NAMES[mine]} / {NAMES[baseline]}")
            for mine in ("achannels", "achannels-b")
            if mine in present
            for baseline in ("raw", "channels")
            if baseline in present
        ]
        head += [label for _, _, label in ratio_cols] + ["target"]
        out.append("| " + " | ".join(head) + " |")
        out.append(
            "| " + " | ".join(["---", "---"] + ["---:"] * (len(head) - 2)) + " |"
        )
        scale = 1 / 1024 if scenario == "memory" else 1.0
        for key in keys:
            cells = grouped[key]
            row = [key[1], key[2] or "-"]
            for system in present:
                cell = cells.get(system)
                if cell is None:
                    row.append("-")
                elif cell.get("error"):
                    row.append("error")
                else:
                    value = figure(cell)
                    row.append(
                        _fmt(
                            None if value is None else value * scale,
                            1 if scale != 1 else 0,
                        )
                    )
            verdicts = []
            for mine, baseline, _ in ratio_cols:
                ours = cells.get(mine)
                ratio, cpu_ratio = compare(ours, cells.get(baseline))
                text = "-" if ratio is None else f"{ratio:.2f}"
                if cpu_ratio is not None:
                    text += f" (CPU {cpu_ratio:.2f})"
                row.append(text)
                for target in TARGETS:
                    if (
                        mine == "achannels"
                        and ours
                        and target.baseline == baseline
                        and target.applies(scenario, key[1], ours["params"])
                        and ratio is not None
                    ):
                        if target.metric == "p99":
                            p99 = compare_p99(ours, cells.get(baseline))
                            why = (
                                f"{NAMES[baseline]}'s p99 "
                                f"{_lost(cells[baseline])} ms: broadcasts not "
                                "complete within the wait"
                                if p99 == 0.0
                                else f"p99 ratio {_fmt(p99, 2)}"
                            )
                            verdicts.append(
                                f"{target.label()} vs {NAMES[baseline]} "
                                f"{_mark(None if p99 is None else target.met(p99))}"
                                f" ({why})"
                            )
                            continue
                        marks = _mark(target.met(ratio))
                        if cpu_ratio is not None:
                            marks += f"/{_mark(target.met(cpu_ratio))}"
                        verdicts.append(
                            f"{target.label()} vs {NAMES[baseline]} {marks}"
                        )
            row.append("; ".join(verdicts) or "-")
            out.append("| " + " | ".join(row) + " |")
        out.append("")
        out += _detail(scenario, keys, grouped, present)
    out += standalone_markdown(results["cells"])
    if notes:
        out += _notes(results)
    return "\n".join(out).rstrip() + "\n"


# -- the standalone benchmarks (benchmarks/standalone.py) ----------------------


def standalone_markdown(cells: list[dict[str, Any]]) -> list[str]:
    """Presence, sync publishing and SSE, each in its owner's table."""
    from benchmarks import bench_presence, bench_publisher
    from benchmarks.standalone import PUBLISHER_SYSTEMS

    out: list[str] = []
    mine = {
        name: [c for c in cells if c["scenario"] == name]
        for name in ("presence", "publisher", "sse")
    }
    for name, found in mine.items():
        for cell in found:
            if cell.get("error"):
                out += [f"{name}: error: {cell['error']}", ""]
    presence = [c for c in mine["presence"] if c["slices"]]
    if presence:
        entries = int(presence[0]["params"]["entries"])
        results = {c["where"]: c["slices"][0] for c in presence}
        out += ["### Presence", "", "Absolute figures (Channels has no presence)."]
        out += ["", bench_presence.table(results, entries), ""]
    publisher = [c for c in mine["publisher"] if c["slices"]]
    if publisher:
        names = {v: k for k, v in PUBLISHER_SYSTEMS.items()}
        rows = [
            {
                "system": names[c["system"], c["params"]["call"]],
                "threads": c["params"]["threads"],
                **c["slices"][0],
            }
            for c in publisher
        ]
        out += ["### Publishing from sync code", "", bench_publisher.table(rows), ""]
    sse = [c for c in mine["sse"] if c["slices"]]
    for cell in sse:
        figures = cell["slices"][0]
        params = cell["params"]
        out += [
            "### Server-Sent Events against WebSockets",
            "",
            f"achannels on {cell['where']}, one group of {params['clients']:,} "
            f"streams or sockets, {params['messages']} group messages per round.",
            "",
            "| figure | SSE | WebSocket | SSE / WebSocket |",
            "| --- | ---: | ---: | ---: |",
        ]
        for key, label in (
            ("deliveries_per_s", "fan-out deliveries/s"),
            ("bytes_per_idle", "server RSS per idle connection, bytes"),
        ):
            a, b = figures["sse"][key], figures["ws"][key]
            out.append(f"| {label} | {a:,.0f} | {b:,.0f} | {_fmt(_ratio(a, b), 2)} |")
        out.append("")
    return out


def _notes(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for note in results.get("notes", []):
        out += [f"> {note}", ""]
    return out


def _detail(
    scenario: str,
    keys: list[tuple[str, str, str]],
    grouped: dict[tuple[str, str, str], dict[str, Any]],
    present: list[str],
) -> list[str]:
    """Latency and CPU per system, where the scenario has them."""
    if scenario == "memory":
        out = [
            "| where | system | RSS before, MiB | RSS after, MiB | connections "
            "| KiB per connection, each set of server processes |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for key in keys:
            for system in present:
                cell = grouped[key].get(system)
                if not cell or not cell["slices"]:
                    continue
                s = cell["slices"][0]
                each = ", ".join(
                    f"{x['per_connection'] / 1024:.1f}" for x in cell["slices"]
                )
                out.append(
                    f"| {key[1]} | {NAMES[system]} | {s['rss_before'] / 2**20:,.1f} "
                    f"| {s['rss_after'] / 2**20:,.1f} | {s['open']:,} | {each} |"
                )
        return [*out, ""]
    if scenario == "scale":
        return _detail_scale(keys, grouped, present)
    if scenario == "rooms":
        return _detail_rooms(keys, grouped, present)
    layer = scenario.startswith("layer.")
    if layer:
        columns = ["CPU %", "CPU µs/op"]
    elif scenario == "fanout":
        columns = ["time to last, ms", "p50 delivery, ms", "p99 delivery, ms"]
    elif scenario.startswith("xfanout."):
        columns = [
            "p50 to last, ms",
            "p99 to last, ms",
            "p99 with lost ones, ms",
            "broadcasts",
            "lost",
            "most members a lost one reached",
        ]
    else:
        columns = ["p50, ms", "p99, ms"]
    if not layer:
        columns += [
            "server CPU %",
            "server CPU µs/op",
            "server waited for CPU %",
            "load-gen CPU %",
        ]
    head = "| " + " | ".join(["where", "size", "system", *columns, "slices"]) + " |"
    out = [
        "<details><summary>latency and CPU</summary>",
        "",
        head,
        "| " + " | ".join(["---"] * 3 + ["---:"] * (head.count("|") - 4)) + " |",
    ]
    for key in keys:
        for system in present:
            cell = grouped[key].get(system)
            if not cell or not cell["slices"]:
                continue
            n = len(cell["slices"])
            eff = efficiency(cell)
            server = _fmt(cpu_pct(cell, "server_cpu"))
            per_op = _fmt(None if not eff else 1e6 / eff, 1)
            prefix = f"| {key[1]} | {key[2] or '-'} | {NAMES[system]} |"
            p50, p99 = latency_ms(cell, 0.5), latency_ms(cell, 0.99)
            if layer:
                values = [server, per_op]
            elif scenario == "fanout":
                values = [_fmt(time_to_last_ms(cell), 1), _fmt(p50, 1), _fmt(p99, 1)]
            elif scenario.startswith("xfanout."):
                every = p99_counting_lost(cell)
                reached = [r for s in cell["slices"] for r in s.get("reached", [])]
                values = [
                    _fmt(p50, 1),
                    _fmt(p99, 1),
                    _lost(cell) if every and math.isinf(every) else _fmt(every, 1),
                    f"{sum(s.get('messages', 0) for s in cell['slices']):,}",
                    f"{sum(s.get('lost', 0) for s in cell['slices']):,}",
                    f"{max(reached):,} of {_members(cell):,}" if reached else "-",
                ]
            else:
                values = [_fmt(p50, 2), _fmt(p99, 2)]
            if not layer:
                values += [
                    server,
                    per_op,
                    _fmt(cpu_pct(cell, "server_wait")),
                    _fmt(cpu_pct(cell, "client_cpu")),
                ]
            out.append(f"{prefix} {' | '.join(values)} | {n} |")
    return [*out, "", "</details>", ""]


def _detail_scale(
    keys: list[tuple[str, str, str]],
    grouped: dict[tuple[str, str, str], dict[str, Any]],
    present: list[str],
) -> list[str]:
    out = [
        "| where | system | members | time to last, ms "
        "| p50 delivery, ms | p99 delivery, ms | server CPU µs/delivery |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in keys:
        for system in present:
            cell = grouped[key].get(system)
            if not cell or not cell["slices"] or cell.get("error"):
                continue
            s = cell["slices"][0]
            per_delivery = (
                1e6 * s["server_cpu"] / s["count"]
                if s.get("server_cpu") and s.get("count")
                else None
            )
            out.append(
                f"| {key[1]} | {NAMES[system]} | {s['open']:,} "
                f"| {_fmt(time_to_last_ms(cell), 1)} "
                f"| {_fmt(latency_ms(cell, 0.5), 1)} "
                f"| {_fmt(latency_ms(cell, 0.99), 1)} | {_fmt(per_delivery, 1)} |"
            )
    return [*out, ""]


def _detail_rooms(
    keys: list[tuple[str, str, str]],
    grouped: dict[tuple[str, str, str], dict[str, Any]],
    present: list[str],
) -> list[str]:
    out = [
        "<details><summary>every step: offered rate, p99, CPU</summary>",
        "",
        "| where | system | offered msg/s | p99 delivery, ms | missing "
        "| kept | server CPU % | server waited for CPU % | load-gen CPU % |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for key in keys:
        for system in present:
            cell = grouped[key].get(system)
            if not cell:
                continue
            for s in sorted(cell["slices"], key=lambda s: s["count"] / s["wall"]):
                wall = s["wall"] or 1
                out.append(
                    f"| {key[1]} | {NAMES[system]} | {s['count'] / wall:,.0f} "
                    f"| {s['p99_ms']:,.1f} | {s['missing']:,} "
                    f"| {'yes' if s.get('kept') else 'no'} "
                    f"| {_fmt(100 * (s.get('server_cpu') or 0) / wall)} "
                    f"| {_fmt(100 * (s.get('server_wait') or 0) / wall)} "
                    f"| {_fmt(100 * (s.get('client_cpu') or 0) / wall)} |"
                )
    return [*out, "", "</details>", ""]


def document(results: dict[str, Any], chart_files: Sequence[str] = ()) -> str:
    """The full results page: how and where it ran, the targets, the
    tables, the charts."""
    m = results["machine"]
    sizes = results["sizes"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        "# achannels benchmark results",
        "",
        f"Mode **{sizes['name']}**, run {m['date']} at commit `{m['commit']}`"
        + (" (with local changes)" if m["dirty"] else "")
        + f", {results['seconds']:.0f} s, with:",
        "",
        "```sh",
        results.get("command", "python -m benchmarks.run"),
        "```",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, "
        f"Python {m['python']}.",
        f"- Servers pinned to cores {m['server_cores']}, load generator to "
        f"{m['client_cores']}. Load average before {_load(m['load_average_before'])}, "
        f"after {_load(m.get('load_average_after'))}.",
        f"- Packages: {packages}.",
        "- Servers: " + "; ".join(m["servers"].values()) + ".",
        "- Every server process runs with "
        + ", ".join(f"`{k}={v}`" for k, v in m.get("malloc", {}).items())
        + " (glibc; see `benchmarks/servers.py`: without it asyncio's 256 KiB "
        "reads cost some processes an mmap + munmap each, at random).",
        f"- Each server cell is the median of {sizes['slices']} slice(s) over "
        f"{sizes.get('epochs', 1)} set(s) of fresh server processes, each layer "
        f"cell of {min(sizes['slices'], sizes.get('layer_slices', sizes['slices']))}; "
        "slices alternate between the systems, rotating the order every round, "
        "and a ratio is the median of the per-round ratios.",
        "",
        "Absolute numbers from a shared machine are noise; the ratios within "
        "this one run are the figure of merit.",
        "",
        *_notes(results),
        "## Targets",
        "",
        "Throughput ratios are what the targets in the last column name "
        "(one p99 latency ratio: the fixed-rate cross-process broadcast); the "
        "CPU-normalised ratio (operations per CPU-second of the server or "
        "layer process) is the same comparison with the CPU stolen by other "
        "processes taken out, the steadier figure on a shared machine.",
        "",
        "| scenario | where | size | vs | ratio | met | CPU-normalised | met | "
        "target |",
        "| --- | --- | --- | --- | ---: | --- | ---: | --- | ---: |",
    ]
    for row in target_rows(results):
        lines.append(
            f"| {row['scenario']} | {row['where']} | {row['params'] or '-'} | "
            f"{NAMES[row['baseline']]} | {_fmt(row['ratio'], 2)} | "
            f"{_yes(row['met'])} | {_fmt(row['cpu_ratio'], 2)} | "
            f"{_yes(row['cpu_met'])} | {row['target']} |"
        )
    lines += ["", "## Results", "", markdown(results, notes=False)]
    if chart_files:
        lines += ["## Charts", ""]
        lines += [f"![{name}]({name})" for name in chart_files]
        lines.append("")
    return "\n".join(lines)


def _yes(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "**no**")


def _load(load: Any) -> str:
    if not load:
        return "?"
    return "/".join(f"{x:.1f}" for x in load)


# -- charts ---------------------------------------------------------------------

COLOURS = {
    "achannels": "#2b7bba",
    "achannels-b": "#6fb6e8",
    "channels": "#d9822b",
    "raw": "#7a7a7a",
}


def charts(results: dict[str, Any], out: Path) -> list[str]:
    """Write PNG charts into ``out``; return their file names (none when
    matplotlib is missing)."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return []
    grouped = _group(results["cells"])
    systems = [s for s in ORDER if s in results["systems"]]
    written = []

    def bars(
        name: str,
        title: str,
        scenarios: Sequence[str],
        ylabel: str,
        log: bool,
        scale: float = 1.0,
    ) -> None:
        keys = [k for k in grouped if k[0] in scenarios]
        if not keys:
            return
        present = [s for s in systems if any(s in grouped[k] for k in keys)]
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(keys) + 2), 4.2))
        width = 0.8 / max(1, len(present))
        for i, system in enumerate(present):
            values = []
            for key in keys:
                cell = grouped[key].get(system)
                value = figure(cell) if cell else None
                values.append(0 if value is None else value * scale)
            xs = [x + (i - (len(present) - 1) / 2) * width for x in range(len(keys))]
            ax.bar(xs, values, width, label=NAMES[system], color=COLOURS[system])
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(
            [_tick(k, next(iter(grouped[k].values()))["params"]) for k in keys],
            fontsize=8,
        )
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    bars("echo.png", "WebSocket echo", ["echo"], "round trips/s", False)
    bars("connrate.png", "Connection rate", ["connrate"], "connections/s", False)
    bars("fanout.png", "Group fan-out", ["fanout"], "deliveries/s", True)
    bars(
        "memory.png",
        "Idle memory per connection",
        ["memory"],
        "KiB per connection",
        False,
        1 / 1024,
    )
    bars(
        "scale.png",
        "Broadcast to every idle connection (one process)",
        ["scale"],
        "deliveries/s",
        False,
    )
    bars(
        "cluster.png",
        "Cross-process broadcast (2 processes, Redis)",
        ["xfanout.rate", "xfanout.flat"],
        "deliveries/s (log)",
        True,
    )
    bars(
        "rooms.png",
        "Many rooms: sustained room messages/s within the p99 bound",
        ["rooms"],
        "room messages/s",
        False,
    )
    layer_scenarios = [s for s, _, _ in SECTIONS if s.startswith("layer.")]
    bars("layers.png", "Channel layers", layer_scenarios, "operations/s (log)", True)
    _ratio_chart(plt, results, out, written)
    return written


_SHORT = {"clients": "clients", "members": "members", "connections": "conns"}


def _short(params: dict[str, Any]) -> str:
    """A chart label's size: the main parameter only (the others, such as
    the channels kept alive, are the same across a chart)."""
    for key, label in _SHORT.items():
        if key in params:
            return f"{params[key]:,} {label}"
    return ""


def _tick(key: tuple[str, str, str], params: dict[str, Any]) -> str:
    scenario, where, _ = key
    label = scenario.removeprefix("layer.")
    size = _short(params)
    return f"{label}\n{where}\n{size}" if size else f"{label}\n{where}"


def _ratio_chart(
    plt: Any, results: dict[str, Any], out: Path, written: list[str]
) -> None:
    rows = [r for r in target_rows(results) if r["ratio"] is not None]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.4))
    labels = []
    for r in rows:
        cell = next(
            c
            for c in results["cells"]
            if c["scenario"] == r["scenario"]
            and c["where"] == r["where"]
            and c["system"] == "achannels"
            and _params_key(c["params"]) == r["params"]
        )
        size = _short(cell["params"])
        labels.append(
            f"{r['scenario'].removeprefix('layer.')} {r['where']}"
            f"{' ' + size if size else ''} vs {NAMES[r['baseline']]}"
        )
    ratios = [r["ratio"] for r in rows]
    colours = ["#3a9a4a" if r["met"] else "#c0392b" for r in rows]
    ys = list(range(len(rows)))
    ax.barh(ys, ratios, color=colours, label="throughput ratio")
    cpu = [(y, r["cpu_ratio"]) for y, r in zip(ys, rows, strict=True) if r["cpu_ratio"]]
    if cpu:
        ax.plot(
            [c for _, c in cpu], [y for y, _ in cpu], "o", color="black",
            markersize=4, label="CPU-normalised ratio",
        )  # fmt: skip
    for y, r in zip(ys, rows, strict=True):
        bound = float(r["bound"])
        ax.plot([bound, bound], [y - 0.4, y + 0.4], color="#1f3b73", linewidth=2)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("achannels / baseline (log scale); blue tick = target")
    ax.set_title("Ratios against the targets (green bar: throughput target met)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "ratios.png", dpi=110)
    plt.close(fig)
    written.append("ratios.png")
