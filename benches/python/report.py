"""Turns one driver run's JSON results into docs/BENCHMARKS.md and its PNG plots.

Usage: python report.py RESULTS_DIR DOCS_DIR

Every number in the document comes from the JSON files of RESULTS_DIR (written by the
benches of one ``benches/run.sh`` run); nothing is typed in by hand, so a new run
rewrites the whole page.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TARGET_RUST_US = 50.0
TARGET_PYTHON_US = 300.0
TARGET_RATIO_1GB = 300.0
TARGET_PSS = 0.10

Json = Dict[str, Any]


def load(results: str, name: str) -> Optional[Json]:
    try:
        with open(os.path.join(results, name)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


# ----------------------------------------------------------------------------- format

def us(v: Optional[float]) -> str:
    if v is None:
        return "–"
    if v >= 1e6:
        return f"{v / 1e6:.2f} s"
    if v >= 1e3:
        return f"{v / 1e3:.1f} ms" if v < 1e5 else f"{v / 1e3:.0f} ms"
    return f"{v:.1f} µs" if v < 100 else f"{v:.0f} µs"


def ms(seconds: float) -> str:
    return us(seconds * 1e6)


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e7 else f"{n / 1e6:.1f} MB"


def ratio(a: Optional[float], b: Optional[float]) -> str:
    if not a or not b:
        return "–"
    r = a / b
    return f"{r:,.0f}×" if r >= 10 else f"{r:.1f}×"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def table(header: List[str], rows: List[List[str]], align: Optional[str] = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def median(values: List[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


# ----------------------------------------------------------------------------- sections

class Report:
    def __init__(self, results: str, docs: str) -> None:
        self.results = results
        self.docs = docs
        self.meta = load(results, "meta.json") or {}
        self.steps = {s["name"]: s for s in self.meta.get("steps", [])}
        self.targets: List[List[str]] = []
        self.notes: List[str] = []
        self.plots: List[str] = []

    def command(self, step: str) -> str:
        s = self.steps.get(step)
        if not s:
            return "_(step not run)_"
        state = "" if s["ok"] else " — **this step failed; see its log**"
        return f"Produced by `{s['command']}` ({s['seconds']:.0f} s){state}."

    def save(self, fig: Any, name: str) -> str:
        fig.tight_layout()
        fig.savefig(os.path.join(self.docs, name), dpi=110)
        plt.close(fig)
        self.plots.append(name)
        return f"![{name}]({name})"

    # ------------------------------------------------------------------ attach
    def attach(self) -> str:
        rust = load(self.results, "attach_rust.json")
        py = load(self.results, "attach_python.json")
        out = ["## 1. Attach latency vs size", "",
               "Warm attach of a cached recording, one process, one connection kept open, "
               "every operation timed alone (p50 and p99 over all of them, the first one "
               "left out). evshm: `open` request, the extent in the arena's mapping (made once "
               "per process), in-place Arrow decode "
               "(Rust: `evshm::Client::open` → record batches; Python: `evshm.Client.open` "
               "then zero-copy numpy views of the four columns). Byte copy: the very same "
               "IPC bytes (`evshm-bytecopy` serves evshm's extent) sent over a Unix socket "
               "to the reader, one copy per open. In Rust it is parsed by arrow-rs's "
               "`StreamReader` reading from the socket (the issue's baseline), and also "
               "received into one buffer and decoded in place (the cheapest a byte copy "
               "can be); in Python it is received into one aligned buffer and read in place "
               "by `pa.ipc.open_stream`, then numpy views. Ratio = byte copy p50 / evshm "
               "p50, both measured side by side in the same process.", ""]
        sizes = (rust or py or {}).get("sizes", [])
        seg = {s["path"]: s.get("segment_bytes") for s in (rust or {}).get("sizes", [])}
        rs = (rust or {}).get("summaries", {})

        def r(label: str, method: str) -> Json:
            return rs.get(f"{label}/{method}") or {}

        if rust:
            rows = []
            for s in rust["sizes"]:
                e, sr, bf = r(s["label"], "evshm"), r(s["label"], "bytecopy_stream_reader"), \
                    r(s["label"], "bytecopy_buffer")
                rows.append([s["label"], f"{s['events']:,}", mb(s["segment_bytes"]),
                             us(e.get("min_us")), us(e.get("p50_us")), us(e.get("p99_us")),
                             us(sr.get("p50_us")), us(sr.get("p99_us")),
                             ratio(sr.get("p50_us"), e.get("p50_us")),
                             us(bf.get("p50_us")), ratio(bf.get("p50_us"), e.get("p50_us"))])
            out += ["### Rust", "", table(
                ["size", "events", "extent", "evshm min", "evshm p50", "evshm p99",
                 "StreamReader p50", "StreamReader p99", "ratio",
                 "one-buffer copy p50", "ratio"], rows), ""]
            worst = max(r(s["label"], "evshm").get("p50_us", 0) for s in rust["sizes"])
            worst99 = max(r(s["label"], "evshm").get("p99_us", 0) for s in rust["sizes"])
            best = max(r(s["label"], "evshm").get("min_us", 0) for s in rust["sizes"])
            rtt = (rs.get("parts/socket_round_trip") or {}).get("p50_us")
            self.targets.append([
                f"Rust warm attach ≤ {TARGET_RUST_US:.0f} µs at every size",
                f"p50 ≤ {us(worst)} at every size (p99 up to {us(worst99)}; fastest open "
                f"≤ {us(best)}); a bare Unix-socket round trip to another process took "
                f"{us(rtt)} at the median in this run (see *Where a Rust open spends its "
                "time*)",
                verdict(worst <= TARGET_RUST_US)])
        out += [self.command("attach_rust"), ""]
        if py:
            rows = []
            for s in py["sizes"]:
                e, b = s["evshm"], s["bytecopy"]
                rows.append([s["label"], f"{s['events']:,}",
                             mb(seg[s["path"]]) if seg.get(s["path"]) else "–",
                             us(e["min_us"]), us(e["p50_us"]), us(e["p99_us"]), us(b["p50_us"]),
                             us(b["p99_us"]), ratio(b["p50_us"], e["p50_us"]),
                             ratio(b["p99_us"], e["p99_us"])])
            out += ["### Python", "", table(
                ["size", "events", "extent", "evshm min", "evshm p50", "evshm p99",
                 "byte copy p50",
                 "byte copy p99", "ratio p50", "ratio p99"], rows), ""]
            worst = max(s["evshm"]["p50_us"] for s in py["sizes"])
            worst99 = max(s["evshm"]["p99_us"] for s in py["sizes"])
            self.targets.append([
                f"Python warm attach ≤ {TARGET_PYTHON_US / 1e3:.1f} ms at every size",
                f"p50 ≤ {us(worst)} at every size (p99 up to {us(worst99)})",
                verdict(worst <= TARGET_PYTHON_US)])
        out += [self.command("attach_python"), ""]
        out += self.chunked_attach(py)
        gb = next((s for s in sizes if s["label"] == "1 GB"), None)
        if gb:
            parts = []
            ok = True
            if rust:
                x = r("1 GB", "bytecopy_stream_reader").get("p50_us", 0) / \
                    r("1 GB", "evshm").get("p50_us", 1)
                y = r("1 GB", "bytecopy_buffer").get("p50_us", 0) / \
                    r("1 GB", "evshm").get("p50_us", 1)
                parts.append(f"Rust {x:,.0f}× (StreamReader), {y:,.0f}× (one-buffer copy)")
                ok = ok and min(x, y) >= TARGET_RATIO_1GB
            if py:
                p = next(s for s in py["sizes"] if s["label"] == "1 GB")
                z = p["bytecopy"]["p50_us"] / p["evshm"]["p50_us"]
                parts.append(f"Python {z:,.0f}×")
                ok = ok and z >= TARGET_RATIO_1GB
            self.targets.append([f"≥ {TARGET_RATIO_1GB:.0f}× faster than the byte copy at 1 GB",
                                 "; ".join(parts) + " (p50 / p50)", verdict(ok)])
        if rust or py:
            fig, ax = plt.subplots(figsize=(8, 5))
            x_of = {s["path"]: seg.get(s["path"]) or s["events"] * 13 for s in sizes}
            series = []
            if rust:
                series += [("Rust evshm", lambda s: r(s["label"], "evshm"), "C0", "-o"),
                           ("Rust byte copy (StreamReader)",
                            lambda s: r(s["label"], "bytecopy_stream_reader"), "C3", "-s"),
                           ("Rust byte copy (one buffer)",
                            lambda s: r(s["label"], "bytecopy_buffer"), "C1", "-^")]
            if py:
                by = {s["path"]: s for s in py["sizes"]}
                series += [("Python evshm", lambda s: by[s["path"]]["evshm"], "C2", "--o"),
                           ("Python byte copy", lambda s: by[s["path"]]["bytecopy"], "C4", "--s")]
            for name, get, color, style in series:
                xs = [x_of[s["path"]] / 1e6 for s in sizes]
                p50 = [get(s).get("p50_us", float("nan")) / 1e3 for s in sizes]
                p99 = [get(s).get("p99_us", float("nan")) / 1e3 for s in sizes]
                ax.plot(xs, p50, style, color=color, label=f"{name} p50")
                ax.fill_between(xs, p50, p99, color=color, alpha=0.15)
            ax.axhline(TARGET_RUST_US / 1e3, color="C0", lw=0.8, ls=":",
                       label="target Rust 50 µs")
            ax.axhline(TARGET_PYTHON_US / 1e3, color="C2", lw=0.8, ls=":",
                       label="target Python 0.3 ms")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("extent size (MB)")
            ax.set_ylabel("attach latency (ms), p50 line, band up to p99")
            ax.set_title("Warm attach: evshm vs the same bytes over a Unix socket")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="upper left")
            out += [self.save(fig, "bench_attach.png"), ""]
        if rust:
            out += [self.parts(rust)]
        affinity = self.affinity()
        if affinity:
            out += [affinity]
        if py and py.get("parts"):
            out += [self.python_parts(py)]
        return "\n".join(out)

    def chunked_attach(self, py: Optional[Json]) -> List[str]:
        one = self.meta.get("plan", {}).get("one_chunk_events")
        c = (py or {}).get("chunked")
        text = (f"In sections 1 to 3, evshmd runs with `--chunk-events {one}`"
                if one else "In sections 1 to 3, evshmd runs with a `--chunk-events`") + (
            " (more events than any of these recordings holds), so that every recording "
            "is one chunk, one extent of an arena, and a warm open maps nothing whatever "
            "the size (the process mapped the arena once). With chunks (the default: 4 Mi "
            "events each), a whole-file open reads one extent and decodes one IPC stream "
            "per chunk: its cost grows with the number of chunks, not with their bytes.")
        if c:
            ch, one_t = c["chunked_table"], c["one_chunk_table"]
            text += (
                f" Measured side by side on the {c['label']} recording "
                f"({c['events']:,} events, {c['chunks']} chunks at the default size, from a "
                f"second evshmd): `open` + `.table` took {us(ch['p50_us'])} at the median "
                f"(p99 {us(ch['p99_us'])}) against {us(one_t['p50_us'])} (p99 "
                f"{us(one_t['p99_us'])}) as one chunk; and `numpy()`, which must "
                f"concatenate the chunks' columns (a copy), {us(c['chunked_numpy']['p50_us'])}.")
        return [text, ""]

    def affinity(self) -> Optional[str]:
        runs = [(name, load(self.results, f"affinity_{key}.json"))
                for key, name in (("same", "client and evshmd on the same vCPU"),
                                  ("cross", "client and evshmd on different vCPUs"))]
        if not all(d for _, d in runs):
            return None
        rows = []
        for name, d in runs:
            lv = d["levels"][0]
            o = lv["open"]
            rows.append([name, f"{lv['opens_per_s']:,.0f}", us(o["min_us"]), us(o["p50_us"]),
                         us(o["p99_us"])])
        return "\n".join([
            "### Same vCPU or not", "",
            "`evshm-load` with one client on the same cached recording, evshmd pinned to "
            "one vCPU and the client pinned to the same one, then to the other. Only the "
            "placement differs: the difference is the cost of waking a thread on another, "
            "idle vCPU, twice per round trip.", "",
            table(["placement", "opens/s", "open min", "open p50", "open p99"], rows), "",
            self.command("affinity_same") + " " + self.command("affinity_cross"), ""])

    def python_parts(self, py: Json) -> str:
        parts = py["parts"]

        def p(key: str, q: str = "p50_us") -> Optional[float]:
            return (parts.get(key) or {}).get(q)

        raw = ("raw_open_request", "extent_buffer", "open_stream_read_all", "numpy_views")
        raw_sum = sum(p(k) or 0 for k in raw)
        rows = [
            ["`evshm.Client.open` + numpy views, whole", us(p("client_open_numpy")),
             us(p("client_open_numpy", "p99_us")), "what the Python table above calls evshm"],
            ["`open` round trip on a raw socket", us(p("raw_open_request")),
             us(p("raw_open_request", "p99_us")), "JSON line out, JSON line back, parsed"],
            ["the extent's buffer in the arena's mapping", us(p("extent_buffer")),
             us(p("extent_buffer", "p99_us")), "`Buffer.slice(offset, size)`, no copy"],
            ["`pa.ipc.open_stream(buffer).read_all()`", us(p("open_stream_read_all")),
             us(p("open_stream_read_all", "p99_us")), "the table, in place"],
            ["numpy views of the four columns", us(p("numpy_views")),
             us(p("numpy_views", "p99_us")), "`to_numpy(zero_copy_only=True)`"],
            ["sum of the four steps above", us(raw_sum), "", "the floor for a warm Python open"],
            ["`os.open` + `fstat` + `mmap` of the arena", us(p("mmap_arena")),
             us(p("mmap_arena", "p99_us")),
             "once per process and arena, at the first open that names it"],
        ]
        return "\n".join([
            "### Where a Python open spends its time", "",
            table(["part", "p50", "p99", "what"], rows, "lrrl"), "",
            "The steps redone with the standard library and pyarrow only, on the same "
            "recording and daemon, each timed alone (`attach.py`). A warm open maps "
            "nothing: the process mapped the arena once, at its first open. Whatever the "
            "whole open costs beyond the sum of the four steps "
            f"({us((p('client_open_numpy') or 0) - raw_sum)} at the median) is the Python "
            "client's own work.", ""])

    def parts(self, rust: Json) -> str:
        rs = rust["summaries"]

        def p(key: str, q: str = "p50_us") -> Optional[float]:
            return (rs.get(f"parts/{key}") or {}).get(q)

        own = sum(p(k) or 0 for k in ("daemon_resolve_stat", "json", "map", "decode"))
        rows = [
            ["`Client::open`, whole", us(p("open")), us(p("open", "p99_us")), "what the table above calls evshm"],
            ["… request (client's `OpenTimings::request`)", us(p("open.request")), us(p("open.request", "p99_us")), "JSON `open` round trip to evshmd"],
            ["… attach (client's `OpenTimings::attach`)", us(p("open.attach")), us(p("open.attach", "p99_us")), "map + decode in place"],
            ["bare Unix-socket round trip", us(p("socket_round_trip")), us(p("socket_round_trip", "p99_us")), "`ping`/`pong` to another process: the floor of any request"],
            ["daemon's path work per open", us(p("daemon_resolve_stat")), us(p("daemon_resolve_stat", "p99_us")), "`Roots::resolve` (canonicalize) + `stat`, run in-process"],
            ["JSON of one exchange", us(p("json")), us(p("json", "p99_us")), "parse request + encode reply + parse reply"],
            ["`StreamDecoder` over the stream", us(p("decode")), us(p("decode", "p99_us")), "schema + batch messages, alignment checked (a warm open maps nothing: the process has its arenas mapped)"],
            ["open then drop", us(p("open_and_drop")), us(p("open_and_drop", "p99_us")), "adds the `release` round trip and the unmap"],
        ]
        return "\n".join([
            f"### Where a Rust open spends its time ({rust.get('parts_of', '')})", "",
            table(["part", "p50", "p99", "what"], rows, "lrrl"), "",
            "Each row is timed alone in the same process (criterion group `parts`). The "
            "request is a socket round trip plus the daemon's and client's work on it; "
            "the attach is the map plus the decode. None of it depends on the size. "
            f"evshm's own work (path, JSON, map, decode: {us(own)} at the median) is small "
            "beside the two wake-ups of a round trip between processes, which on this "
            "two-vCPU virtual machine take from a few µs (while both vCPUs are busy) to "
            "tens of µs (when the daemon's vCPU has gone idle and must be woken by the "
            f"hypervisor): the bare round trip took {us(p('socket_round_trip'))} at the "
            f"median here, {us(p('socket_round_trip', 'min_us'))} at best.", ""])

    # ------------------------------------------------------------------ readers
    def readers(self) -> str:
        d = load(self.results, "readers.json")
        out = ["## 2. N readers of one dataset", ""]
        if not d:
            return "\n".join(out + ["Not run. " + self.command("readers"), ""])
        data, one = d["dataset"], d["one_copy_bytes"]
        out += [
            f"{data['events']:,} events of {data['format'].upper()} "
            f"({mb(one)} as one Arrow copy). Every reader is its own Python process, "
            "started and done importing before the clock starts; the clock stops when the "
            "last reader holds the four columns as numpy arrays (**ready**) and when every "
            "reader has also summed every column (**scanned**: a pass over all the data, "
            "whose sums are checked against evshm's in every reader). PSS is read from "
            "`/proc/PID/smaps_rollup` of every reader while all of them still hold the "
            "data; **data PSS** is its growth over each reader's PSS just before the start "
            "(the interpreter, pyarrow and numpy are not the data: about "
            f"{self.baseline_pss(d)} per reader). Medians of {d['reps']} runs.", "",
            "- **evshm**: connect, `open` (recording cached), zero-copy numpy views;",
            "- **byte copy**: connect to `evshm-bytecopy`, receive the IPC stream into one "
            "aligned buffer, `pa.ipc.open_stream` in place, numpy views;",
            f"- **decode**: every reader decodes the file itself with the fastest correct "
            f"peer measured in section 4, `{data['peer']}` "
            f"({', '.join(f'{k}={v}' for k, v in data['peer_params'].items()) or 'defaults'}), "
            "file in the page cache;",
        ]
        ray = d.get("ray", {})
        if "skipped" in ray:
            out.append(f"- **Ray**: skipped: {ray['skipped']}.")
        else:
            out.append(
                f"- **Ray**: the columns `ray.put` once into Ray's object store (Ray's start "
                f"took {ray['init_s']:.1f} s and the put {ms(ray['put_s'])}, neither counted), "
                "each reader an actor that `ray.get`s them (zero-copy numpy). Run after the "
                "other methods, since Ray's processes stay up.")
        out.append("")
        methods: List[tuple] = [("evshm", d["runs"]["evshm"]), ("byte copy", d["runs"]["bytecopy"]),
                                (f"decode ({data['peer']})", d["runs"]["decode"])]
        if "runs" in ray:
            methods.append(("Ray", ray["runs"]))
        rows = []
        agg: Dict[str, Dict[int, Json]] = {}
        for name, runs in methods:
            agg[name] = {}
            for n in d["counts"]:
                rs = runs[str(n)]
                m = {k: median([x[k] for x in rs]) for k in
                     ("ready_s", "scanned_s", "pss_bytes", "data_pss_bytes")}
                m["agrees"] = all(x["agrees"] for x in rs)
                pub = [x["publisher_pss_bytes"] for x in rs
                       if x.get("publisher_pss_bytes") is not None]
                m["publisher"] = median(pub) if pub else None
                agg[name][n] = m
        for n in d["counts"]:
            base = agg["evshm"][n]
            for name, _ in methods:
                m = agg[name][n]
                rows.append([str(n), name, ms(m["ready_s"]), ratio(m["ready_s"], base["ready_s"]),
                             ms(m["scanned_s"]), mb(m["pss_bytes"]), mb(m["data_pss_bytes"]),
                             f"{m['data_pss_bytes'] / one:.2f}",
                             mb(m["publisher"]) if m["publisher"] is not None else "–",
                             "yes" if m["agrees"] else "**no**"])
        out += [table(["N", "method", "ready", "vs evshm", "scanned", "readers' PSS",
                       "data PSS", "data PSS / one copy", "publisher's share",
                       "sums agree"], rows, "rlrrrrrrrl"), "",
                "**publisher's share**: the shared-memory PSS, read at the same moment, of "
                "the process that published the data besides the readers: evshmd (it keeps "
                "its mapping of the arena it wrote the extent through, so the readers are "
                "charged only part of those pages: its share is its PSS of the arena's "
                "pages that others map too) and Ray's driver (it wrote the object into the "
                "store and still maps it, likewise). The byte-copy server also holds a copy of "
                "its own in its heap, on top of the readers' copies; the decoding readers "
                "need no server. The extent itself lives in an arena in /dev/shm: one "
                "copy, shared by evshmd and the readers that map it.", ""]
        e8 = agg["evshm"][max(d["counts"])]
        # evshmd maps the arena too, so the readers share the extent's pages with it: the
        # data's PSS is theirs plus evshmd's share.
        held = e8["data_pss_bytes"] + (e8["publisher"] or 0)
        excess = held / one - 1
        self.targets.append([
            f"readers' total PSS for N = {max(d['counts'])} within 10 % of one copy",
            f"evshm: data PSS {mb(e8['data_pss_bytes'])}, plus evshmd's share of the same "
            f"pages {mb(e8['publisher'] or 0)}, for one copy of {mb(one)} "
            f"({excess * 100:+.1f} %); all PSS incl. {max(d['counts'])} Python interpreters "
            f"{mb(e8['pss_bytes'])}",
            verdict(abs(excess) <= TARGET_PSS)])
        out += [self.command("readers"), ""]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
        for i, (name, _) in enumerate(methods):
            ns = d["counts"]
            a1.plot(ns, [agg[name][n]["ready_s"] * 1e3 for n in ns], "-o", color=f"C{i}",
                    label=name)
            a2.plot(ns, [agg[name][n]["data_pss_bytes"] / 1e6 for n in ns], "-o",
                    color=f"C{i}", label=name)
        a2.axhline(one / 1e6, color="k", lw=0.8, ls=":", label="one copy")
        a1.set_yscale("log")
        a1.set_title("time until every reader holds numpy columns")
        a1.set_ylabel("ms (log)")
        a2.set_title("sum of the readers' data PSS")
        a2.set_ylabel("MB")
        for a in (a1, a2):
            a.set_xlabel("readers (N)")
            a.set_xticks(d["counts"])
            a.grid(True, alpha=0.3)
            a.legend(fontsize=8)
        out += [self.save(fig, "bench_readers.png"), ""]
        return "\n".join(out)

    def baseline_pss(self, d: Json) -> str:
        r = d["runs"]["evshm"]["1"][0]
        return mb(r["pss_bytes"] - r["data_pss_bytes"])

    # ------------------------------------------------------------------ load
    def load(self) -> str:
        d = load(self.results, "load.json")
        out = ["## 3. Opens per second under concurrent clients", ""]
        if not d:
            return "\n".join(out + ["Not run. " + self.command("load"), ""])
        out += [
            f"`evshm-load` on `{d['path']}` (cached): N client threads in one process, each "
            "with its own connection, each looping `open` (request, map, decode) then drop "
            f"(`release` round trip, unmap) for {d['seconds']:.0f} s after "
            f"{d['warm_up']:.1f} s of warm-up. Daemon and clients share the 2 cores. "
            "Latency is that of `open` alone.", ""]
        rows = []
        for lv in d["levels"]:
            o, c = lv["open"], lv["open_release"]
            rows.append([str(lv["clients"]), f"{lv['opens_per_s']:,.0f}", us(o["p50_us"]),
                         us(o["p90_us"]), us(o["p99_us"]), us(o["p999_us"]),
                         us(c["p50_us"])])
        out += [table(["clients", "opens/s", "p50", "p90", "p99", "p99.9",
                       "open+release p50"], rows), "", self.command("load"), ""]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
        ns = [lv["clients"] for lv in d["levels"]]
        a1.plot(ns, [lv["opens_per_s"] for lv in d["levels"]], "-o")
        a1.set_title("opens per second (all clients)")
        a1.set_ylim(bottom=0)
        for q, style in (("p50_us", "-o"), ("p90_us", "-s"), ("p99_us", "-^"),
                         ("p999_us", "-v")):
            a2.plot(ns, [lv["open"][q] / 1e3 for lv in d["levels"]], style,
                    label=q.replace("_us", "").replace("p999", "p99.9"))
        a2.set_yscale("log")
        a2.set_title("open latency under load")
        a2.set_ylabel("ms (log)")
        a2.legend(fontsize=8)
        for a in (a1, a2):
            a.set_xscale("log", base=2)
            a.set_xticks(ns)
            a.set_xticklabels([str(n) for n in ns])
            a.set_xlabel("concurrent clients")
            a.grid(True, alpha=0.3)
        out += [self.save(fig, "bench_load.png"), ""]
        return "\n".join(out)

    # ------------------------------------------------------------------ cold
    def cold(self) -> str:
        d = load(self.results, "peers.json")
        rust = load(self.results, "decode_rust.json") or {}
        dr = rust.get("decoders", {})
        ingest = rust.get("ingest", {})
        out = ["## 4. Cold open per format", ""]
        if not d:
            return "\n".join(out + ["Not run. " + self.command("peers"), ""])
        out += [
            "A recording no extent holds yet, its file in the page cache. **evshmd cold "
            "open**: `evshm.Client.open` from Python, each from a fresh evshmd (nothing "
            "cached, and no extent of an earlier open kept: on this virtual machine, "
            "faulting in memory that was not freed lately costs several times more, so a "
            "daemon holding earlier extents decodes later opens slower), evshmd with its "
            "defaults, the open made once its provisioned pages (`--provision`, 1 GiB of "
            "free pages of its arenas allocated and mapped ahead) are ready, as for a "
            "daemon started a while before (chunks of 4 Mi events, "
            f"{self.chunks_note(d)}, decoded on as many threads as CPUs): the index pass "
            "(counting, one thread), then each chunk decoded into an extent of an arena, "
            "publication, then the client's map of the arena and read (a table with one "
            "Arrow chunk per extent). **evshm-formats**: "
            "the decoders' criterion bench on the same file, from memory, one thread: the "
            "counting pass alone, the decoding pass into columns already in memory, and the "
            "decoding pass into fresh memory (every page faulted in on first write, as in a "
            "freshly allocated shared memory). **Peers**: each Python "
            "package that reads the format decodes the same file into numpy arrays; its "
            "output was first compared with evshm's, event by event, and a peer that "
            "disagrees is shown but never taken as the reference. expelliarmus's read "
            "buffer was tuned per format (fastest of 4 KiB, 64 KiB, 1 MiB). Medians; "
            "repetitions alternate evshmd and the peers. Ratio = peer time / evshmd cold "
            "open time (above 1: evshmd is faster).", ""]

        def rate(fmt: str, part: str) -> Optional[float]:
            return ((dr.get(fmt) or {}).get(part) or {}).get("mev_per_s")

        def mevs(v: Optional[float]) -> str:
            return f"{v:.0f}" if v else "–"

        rows = []
        for f in d["formats"]:
            n, fmt = f["events"], f["format"]
            cold = f["evshmd_cold_open"]["p50_us"]
            first = True
            for name, peer in (f["peers"] or {"–": None}).items():
                lead = [fmt.upper(), f"{n:,}", mb(f["file_bytes"]),
                        f"{us(cold)} ({n / cold:.0f} Mev/s)",
                        " / ".join(mevs(rate(fmt, p)) for p in
                                   ("count", "decode", "decode_fresh"))] if first else [""] * 5
                first = False
                if peer is None:
                    rows.append(lead + ["none reads it", "–", "–", "–"])
                    continue
                t = peer["time"]["p50_us"]
                ok = "yes" if peer["agrees"] else f"**no**: {peer['detail']}"
                rows.append(lead + [name, f"{us(t)} ({n / t:.0f} Mev/s)",
                                    ratio(t, cold) if t >= cold else f"{t / cold:.2f}×", ok])
        out += [table(["format", "events", "file", "evshmd cold open",
                       "evshm-formats count / decode / decode into fresh memory (Mev/s)",
                       "peer", "peer decode", "ratio", "agrees with evshm"], rows,
                      "lrrrrlrrl"), ""]
        out += [self.command("peers") + " " + self.command("decode_rust"), ""]
        if ingest:
            out += self.ingest_parts(d, dr, ingest)
        fig, ax = plt.subplots(figsize=(9, 6))
        labels, vals, colors = [], [], []
        for f in d["formats"]:
            n, fmt = f["events"], f["format"]
            bars = [("evshmd cold open", n / f["evshmd_cold_open"]["p50_us"], "C0"),
                    ("evshm-formats decode (fresh memory)", rate(fmt, "decode_fresh"), "C9")]
            bars += [(f"{name}{'' if peer['agrees'] else ' (WRONG output)'}",
                      n / peer["time"]["p50_us"], "C1" if peer["agrees"] else "0.7")
                     for name, peer in f["peers"].items()]
            for label, value, color in bars:
                if value:
                    labels.append(f"{fmt.upper()}: {label}")
                    vals.append(value)
                    colors.append(color)
        ys = list(range(len(vals)))[::-1]
        ax.barh(ys, vals, color=colors)
        ax.set_yticks(ys)
        ax.set_yticklabels(labels, fontsize=8)
        for y, v in zip(ys, vals):
            ax.text(v, y, f" {v:.0f}", va="center", fontsize=8)
        ax.set_xlabel("million events per second (higher is better)")
        ax.set_title("Cold open (decode + publish) vs decoders, one file per format")
        ax.grid(True, axis="x", alpha=0.3)
        out += [self.save(fig, "bench_cold_open.png"), ""]
        return "\n".join(out)

    def ingest_parts(self, d: Json, dr: Json, ingest: Json) -> List[str]:
        def p50(x: Optional[Json]) -> Optional[float]:
            return (x or {}).get("p50_us")

        rows = []
        for f in d["formats"]:
            fmt = f["format"]
            g = ingest.get(fmt)
            if not g:
                continue
            parts = {
                "read": p50(g["read_file"]), "count": p50((dr.get(fmt) or {}).get("count", {}).get("time")),
                "decode": p50((dr.get(fmt) or {}).get("decode_fresh", {}).get("time")),
                "create": p50(g.get("allocate")), "fill": p50(g.get("allocate_fault")),
            }
            rows.append([fmt.upper(), mb(g["extent_bytes"]), us(f["evshmd_cold_open"]["p50_us"]),
                         us(p50(g["ingest"])), us(p50(g.get("ingest_fresh"))),
                         us(parts["read"]), us(parts["count"]),
                         us(parts["decode"]), us(parts["create"]), us(parts["fill"]),
                         us(p50(g.get("map_fault_unmap"))), us(p50(g.get("map_populate_unmap")))])
        return [
            "Where a cold open goes: evshmd's `ingest` run in-process through the daemon's "
            "library (no socket, no client), the whole file as one chunk on one thread, "
            "beside its parts timed alone. `ingest` reads "
            "the file twice (a counting pass, then a decoding pass) and writes the columns "
            "into an extent of an arena: into pages an earlier run left allocated and "
            "mapped (as after an eviction, or provisioned), and, `ingest` fresh, into a new "
            "arena whose pages are allocated (`fallocate`) and faulted in by the decode.", "",
            table(["format", "extent", "cold open (socket)", "`ingest` in-process",
                   "`ingest` fresh", "read file, one pass", "count",
                   "decode into fresh memory", "allocate an extent (new arena + fallocate)",
                   "… + fault every page", "map, fault every page, unmap",
                   "same with `MAP_POPULATE`"], rows), "",
            "The last two columns map an already allocated file of the extent's size: "
            "one page fault per 4 KiB page against a single `MAP_POPULATE` that maps them "
            "all in the `mmap` call. [PAGES.md](PAGES.md) measures the pages alone, as the "
            "event rate they cap one thread at, with 4 KiB and with 2 MiB tmpfs pages.", ""]

    def chunks_note(self, d: Json) -> str:
        counts = sorted({f["chunks"] for f in d["formats"] if f.get("chunks")})
        if not counts or counts == [1]:
            return "one chunk per file here"
        return (f"{counts[0]} chunks per file here" if len(counts) == 1
                else f"{counts[0]} to {counts[-1]} chunks per file here")

    # ------------------------------------------------------------------ window
    def window(self) -> str:
        d = load(self.results, "window.json")
        out = ["## 5. A cold time window of a large recording", ""]
        if not d:
            return "\n".join(out + ["Not run. " + self.command("window"), ""])
        runs = d["runs"]
        peer = d.get("peer")
        peer_s = median(runs["peer"]) if runs.get("peer") else None
        t0, t1 = d["window"]
        span = d["t_last"] - d["t_first"]

        def agg(key: str) -> Json:
            rs = runs[key]
            return {"s": median([r["seconds"] for r in rs]),
                    "index_ms": median([r["index_ms"] for r in rs]),
                    "decode_ms": median([max(r["decode_ms"] or [0]) for r in rs]),
                    "decodes": sorted({r["decodes"] for r in rs}),
                    "events": sorted({r["decoded_events"] for r in rs}),
                    "chunks": sorted({len(r["chunks"]) for r in rs}),
                    "agrees": all(r["agrees"] for r in rs),
                    "warm": (median([r["warm"]["p50_us"] for r in rs if r.get("warm")]) / 1e6
                             if any(r.get("warm") for r in rs) else None)}

        py_a, py_b = agg("python_cold"), agg("python_indexed")
        rs_a, rs_b = agg("rust_cold"), agg("rust_indexed")

        def n(values: List[int]) -> str:
            return " or ".join(f"{v:,}" for v in values)

        def decoded(state: Json) -> str:
            chunks = "chunk" if state["decodes"] == [1] else "chunks"
            return (f"{n(state['decodes'])} {chunks} decoded ({n(state['events'])} events) "
                    f"in {ms(state['decode_ms'] / 1e3)}")

        def vs(seconds: Optional[float]) -> str:
            return ratio(peer_s, seconds) if peer_s and seconds else "–"

        peer_rows = []
        for name, p in d["peers"].items():
            peer_rows.append(f"`{name}` {'agrees' if p['agrees'] else 'disagrees'} "
                             f"({p['detail']})")
        out += [
            f"{d['events']:,} events of EVT3 written by `evshm generate` "
            f"({mb(d['file_bytes'])} file, {mb(d['events'] * 13)} decoded; "
            f"{span / 1e6:.1f} s of sensor time; {d['chunks']} chunks at evshmd's default "
            "of 4 Mi events), in the page cache. The window: "
            f"[{t0:,}, {t1:,}) µs, {d['window_us'] / 1e3:.0f} ms in the middle of the "
            f"recording, {d['window_rows']:,} events. The reference is the whole file "
            "decoded by the fastest peer whose output agrees with evshm event by event "
            f"({'; '.join(peer_rows)}): "
            + (f"**`{peer}`**, {ms(peer_s)} at the median." if peer else
               "**none agrees**, so no ratio is given.") + "", "",
            "Time until the window's rows are in hand. Python: `client.open(path, "
            "window=(t0, t1))` then `.numpy()` (four numpy arrays; views when the window "
            "lies in one chunk, as here, a copy when it straddles two). Rust: "
            "`Client::open_window` (record batches over the mappings; `evshm-window`). "
            "The connection is made before the clock starts. Each state has a fresh "
            "evshmd of its own, with default options:", "",
            "- **(a) first contact**: the daemon has never seen the file; the open builds "
            "the chunk index as far as the window (a counting pass from the start of the file "
            "to the window's chunks, one thread), then "
            "decodes the chunks that hold the window;",
            "- **(b) index cached**: the daemon served another window of the file (its "
            "last 50 ms, to another connection, which took the index to the end of the "
            "file) before; only the window's chunks are "
            "decoded;",
            "- **(c) warm**: the same window again once its chunks are resident (median "
            f"of {d['warm_opens']} opens per round on (a)'s connection).", "",
            f"Medians of {d['reps']} rounds; the order of the steps rotates from round to "
            "round, so evshm and the peer run side by side under the same load. Every (a) "
            "and (b) open was checked against the peer's rows of the window (Python: every "
            "column; Rust: the columns' sums): "
            + ("all agree." if all(a["agrees"] for a in (py_a, py_b, rs_a, rs_b))
               else "**some differ**.") + " *vs peer* = the peer's whole-file decode time "
            "/ this time (how many times sooner the rows are in hand).", ""]
        rows = [
            ["(a) first contact",
             f"index pass {ms(py_a['index_ms'] / 1e3)}, then {decoded(py_a)}",
             ms(py_a["s"]), vs(py_a["s"]), ms(rs_a["s"]), vs(rs_a["s"])],
            ["(b) index cached",
             decoded(py_b),
             ms(py_b["s"]), vs(py_b["s"]), ms(rs_b["s"]), vs(rs_b["s"])],
            ["(c) warm", "nothing decoded: request, maps, slices",
             ms(py_a["warm"]) if py_a["warm"] else "–", vs(py_a["warm"]),
             ms(rs_a["warm"]) if rs_a["warm"] else "–", vs(rs_a["warm"])],
        ]
        if peer_s:
            rows.append([f"peer: `{peer}` decodes the whole file", "every event",
                         ms(peer_s), "1.0×", "", ""])
        rows.append(["evshm: whole file, first contact (once)",
                     f"index pass {ms(d['whole_index_ms'] / 1e3)}, then all {d['chunks']} "
                     "chunks decoded", ms(d["whole_open_s"]), vs(d["whole_open_s"]), "", ""])
        out += [table(["state", "what the daemon does (Python's opens)", "Python",
                       "vs peer", "Rust", "vs peer"], rows, "llrrrr"), "",
                "Decode counts and times come from evshmd's log (info level); the chunk "
                "decode time is that of the slowest chunk of the open. The index pass "
                "reads the file from its start to the window (evshmd indexes only as far "
                "as requests need): it is what (a) costs beyond (b), and it grows with the "
                "window's position in the file while the window's decode does not.", "", self.command("window"), ""]
        if peer_s:
            for label, state in (("first contact (index built up to the window)", py_a),
                                 ("index cached", py_b)):
                r = peer_s / state["s"]
                self.targets.append([
                    f"cold 50 ms window of a large recording ≥ 10× sooner than the fastest "
                    f"correct peer's whole-file decode: {label}",
                    f"Python {r:.1f}× ({ms(state['s'])} vs `{peer}` {ms(peer_s)}); Rust "
                    f"{vs(rs_a['s'] if state is py_a else rs_b['s'])}",
                    verdict(r >= 10)])
        fig, ax = plt.subplots(figsize=(9, 4.8))
        bars = [(f"{peer}: whole file" if peer else None, peer_s, "C1"),
                ("evshm: whole file, first contact", d["whole_open_s"], "C7"),
                ("Python (a) first contact", py_a["s"], "C0"),
                ("Rust (a) first contact", rs_a["s"], "C9"),
                ("Python (b) index cached", py_b["s"], "C0"),
                ("Rust (b) index cached", rs_b["s"], "C9"),
                ("Python (c) warm", py_a["warm"], "C2"),
                ("Rust (c) warm", rs_a["warm"], "C2")]
        bars = [b for b in bars if b[0] and b[1]]
        ys = list(range(len(bars)))[::-1]
        ax.barh(ys, [b[1] * 1e3 for b in bars], color=[b[2] for b in bars])
        ax.set_yticks(ys)
        ax.set_yticklabels([b[0] for b in bars], fontsize=8)
        for y, b in zip(ys, bars):
            ax.text(b[1] * 1e3, y, f" {ms(b[1])}", va="center", fontsize=8)
        if peer_s:
            ax.axvline(peer_s * 1e3 / 10, color="k", lw=0.8, ls=":",
                       label=f"goal: 10× sooner than {peer}")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_xscale("log")
        ax.set_xlabel("ms until the rows are in hand (log; lower is better)")
        ax.set_title(f"A 50 ms window of {d['events'] / 1e6:.0f} M events of EVT3")
        ax.grid(True, axis="x", which="both", alpha=0.3)
        out += [self.save(fig, "bench_window.png"), ""]
        return "\n".join(out)

    # ------------------------------------------------------------------ threads
    def threads(self) -> str:
        d = load(self.results, "threads.json")
        out = ["## 6. Parallel chunk decode", ""]
        if not d:
            return "\n".join(out + ["Not run. " + self.command("threads"), ""])
        fs = d["formats"]
        cpus = fs[0]["cpus"] if fs else "?"
        out += [
            "The cold open of a whole recording (the files of section 4) by evshmd with "
            "`--decode-threads 1` and with `--decode-threads 2`, both at the default "
            "chunk size (4 Mi events); the opens alternate between the two, each from a "
            "fresh evshmd (no index, no extent, none kept from an earlier open), timed from "
            "`evshm.Client.open` (Python) to the table in hand. The index pass is one "
            "thread whatever the option (evshmd's log gives its time): the speedup after "
            "it is that of the chunk decodes. **This machine has "
            f"{cpus} vCPUs**, shared by the decode threads, the client and whatever else "
            "runs (see the load average above): 2× is the ceiling, and a chunk decode "
            "that takes longer with 2 threads than with 1 shows the cores, or memory "
            f"bandwidth, being shared. Medians of {fs[0]['reps'] if fs else '?'} opens "
            "per thread count, the first (warm-up) left out.", ""]
        rows = []
        for f in fs:
            one, two = f["threads_1"], f["threads_2"]
            rows.append([f["format"].upper(), f"{f['events']:,}", str(f["chunks"]),
                         us(one["open"]["p50_us"]), us(two["open"]["p50_us"]),
                         f"{one['open']['p50_us'] / two['open']['p50_us']:.2f}×",
                         us(one["index"]["p50_us"]),
                         f"{one['after_index']['p50_us'] / two['after_index']['p50_us']:.2f}×",
                         f"{us(one['chunk_decode']['p50_us'])} / "
                         f"{us(two['chunk_decode']['p50_us'])}",
                         "yes" if f["agree"] else "**no**"])
        out += [table(["format", "events", "chunks", "cold open, 1 thread",
                       "cold open, 2 threads", "speedup", "index pass (serial)",
                       "speedup after the index", "one chunk's decode, 1 / 2 threads",
                       "tables agree"], rows, "lrrrrrrrrl"), ""]
        section4 = (load(self.results, "peers.json") or {}).get("formats", [])
        peers = {f["format"]: f for f in section4}
        same = [(f["format"], peers[f["format"]]["evshmd_cold_open"]["p50_us"],
                 f["threads_2"]["open"]["p50_us"]) for f in fs
                if f["format"] in peers and peers[f["format"]].get("evshmd_cold_open")]
        if same and cpus == 2:
            out += [
                "Section 4's cold opens are the same configuration as the 2-thread column "
                "(defaults on a 2-vCPU machine) and measured "
                + ", ".join(f"{fmt.upper()} {us(a)}" for fmt, a, _ in same) + " against "
                + ", ".join(f"{us(b)}" for _, _, b in same) + " here. The daemon is the "
                "same; what differs is the memory it faults in: on this virtual machine the "
                "cost of touching new pages depends on how long ago memory was freed (a "
                "manual check while writing this bench: a 2-thread EVT2 cold open took "
                "about 0.3 s right after another process freed its arrays and 0.45 s after "
                "3 s idle, and a peer's decode of the same file varied from 0.25 to 1.5 s "
                "the same way), and section 4 interleaves the peers' runs with evshmd's "
                "opens while this section runs opens back to back. Ratios within a section "
                "compare like with like; absolute cold-open times carry this spread.", ""]
        if any(f["chunks"] < 2 for f in fs):
            out += ["A recording of one chunk has nothing to decode in parallel (the files of "
                    "a `--quick` run are that small).", ""]
        out += [self.command("threads"), ""]
        return "\n".join(out)

    # ------------------------------------------------------------------ transforms
    def transforms(self) -> str:
        from transforms import section, target_row

        d = load(self.results, "transforms.json")
        if not d:
            return "\n".join(["## 7. Transforms against tonic", "",
                              "Not run. " + self.command("transforms"), ""])
        self.targets.append(target_row(d))
        return section(d, self.command("transforms"))

    # ------------------------------------------------------------------ flight
    def flight(self) -> str:
        from flight import plot, section, target_rows

        d = load(self.results, "flight.json")
        if not d:
            return "\n".join(["## 8. Arrow Flight: a cached recording over loopback", "",
                              "Not run. " + self.command("flight"), ""])
        plot(d, os.path.join(self.docs, "bench_flight.png"))
        self.plots.append("bench_flight.png")
        self.targets.extend(target_rows(d))
        return section(d, self.command("flight"))

    # ------------------------------------------------------------------ page
    def write(self) -> None:
        sections = [self.attach(), self.readers(), self.load(), self.cold(), self.window(),
                    self.threads(), self.transforms(), self.flight()]
        m = self.meta.get("machine", {})
        v = self.meta.get("versions", {})
        git = self.meta.get("git", {})
        head = [
            "# Benchmarks", "",
            "Generated by `benches/run.sh` (driver `benches/run.py`); do not edit by hand, "
            "run it again. Every ratio compares figures measured side by side in the same "
            "run on the same machine; absolute times drift with the machine's load, the "
            "ratios much less.", "",
            f"- **Run**: `{self.meta.get('command', '?')}`, {self.meta.get('started', '?')}, "
            f"{self.meta.get('total_s', 0) / 60:.0f} min, commit `{git.get('commit', '?')}`"
            f"{' (with uncommitted changes)' if git.get('dirty') else ''}.",
            f"- **Machine**: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
            f"{m.get('mem_gib', '?')} GiB RAM, /dev/shm {m.get('shm', 0) / 2**30:.0f} GiB; "
            f"`{m.get('uname', '?')}`.",
            f"- **Memory**: {self.meta.get('memory_touched', {}).get('bytes', 0) / 2**30:.1f} "
            "GiB of the machine's memory written once before the run (a file in /dev/shm, "
            "removed at once), since this VM backs guest memory lazily and a page's first "
            "touch costs several times its next (docs/PAGES.md). Each section says which "
            "evshmd serves it and what that daemon holds.",
            f"- **Load average** (1, 5, 15 min) at the start: {self.meta.get('loadavg_start', '?')}; "
            f"at the end: {self.meta.get('loadavg_end', '?')} (other work on the machine "
            "shows here; the benches do not pin or isolate anything).",
            f"- **Software**: {v.get('rustc', '?')}, Python {v.get('python', '?')}, "
            + ", ".join(f"{k} {v.get(k, '?')}" for k in
                        ("pyarrow", "numpy", "expelliarmus", "evt3", "ray", "tonic")) + ".",
            "- **Recordings**: synthetic, written by `evshm generate` (EVT3 for the attach "
            "sizes; one file per format for sections 2, 4 and 6; a large EVT3 file for "
            "section 5).",
            "- **evshmd**: sections 1 to 3 use one daemon with `--chunk-events` above every "
            "recording's size (each recording one chunk, one extent); sections 4 to 6 "
            "start daemons of their own with the default chunking (4 Mi events per chunk) "
            "and decode threads (one per CPU) unless said otherwise.",
            "- **Reproduce**: `benches/run.sh` (full) or `benches/run.sh --quick`; raw JSON "
            "and every step's log land in `target/bench-results/`. Never part of CI.", "",
        ]
        failed = [s for s in self.meta.get("steps", []) if not s["ok"]]
        if failed:
            head += ["**Failed steps**: " + ", ".join(f"`{s['name']}` (log `{s['log']}`)"
                                                      for s in failed), ""]
        skipped = [k for k in ("expelliarmus", "evt3", "ray", "tonic")
                   if v.get(k) == "not installed"]
        if skipped:
            head += ["**Skipped**: " + ", ".join(f"{k} (does not install here)"
                                                 for k in skipped), ""]
        head += ["## Targets", "", table(["target", "measured", "verdict"], self.targets,
                                         "lll"), ""]
        text = "\n".join(head + sections + self.epilogue())
        with open(os.path.join(self.docs, "BENCHMARKS.md"), "w") as f:
            f.write(text.rstrip() + "\n")

    def epilogue(self) -> List[str]:
        rows = [[s["name"], f"`{s['command']}`", f"{s['seconds']:.0f} s",
                 "ok" if s["ok"] else "**failed**"] for s in self.meta.get("steps", [])]
        return ["## Steps of this run", "",
                "`PLAN` is the JSON plan the driver writes (sockets, recordings, durations); "
                "the criterion benches read it from `$EVSHM_BENCH_PLAN`.", "",
                table(["step", "command", "time", "status"], rows, "lllr"), ""]


def main() -> None:
    results, docs = sys.argv[1], sys.argv[2]
    os.makedirs(docs, exist_ok=True)
    Report(results, docs).write()


if __name__ == "__main__":
    main()
