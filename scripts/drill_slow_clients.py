#!/usr/bin/env python3
"""The slow-client drill's client side (standard library only; run by drill-slow-clients.sh).

  drill_slow_clients.py hold  ...   one attacker process: opens connections from loopback source
                                    addresses, sends a partial request header (or nothing) on
                                    each, never finishes, and reports on stdout (JSON lines) how
                                    many the server held and when it closed the others.
  drill_slow_clients.py drill ...   the drill: baseline, the flood (several `hold` processes, to
                                    stay under the open-file limit), probes of /healthz and
                                    /v1/verify from a separate client while the flood is held,
                                    the server's RSS and open files before, during and after,
                                    and the verdict (exit status 0 when every check holds).
"""

import argparse
import errno
import http.client
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: keyward\r\nUser-Agent: slow-drill\r\n"  # no blank line
PAYLOADS = {
    "partial": PARTIAL,  # an HTTP/1.1 head that never ends
    "silent": b"",  # connects and sends nothing
    "h2-prefix": b"PRI * HTTP/2.0\r\n",  # the start of the HTTP/2 preface, never finished
    "h2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the whole preface, then nothing
}
FLOOD_TEXT = {
    "partial": "a partial header",
    "silent": "nothing",
    "h2-prefix": "the start of the HTTP/2 preface",
    "h2-preface": "the HTTP/2 preface and nothing more",
}
MIB = 1024 * 1024


def loopback_sources(first_third_octet, count):
    """`count` distinct loopback addresses 127.0.x.y (x from `first_third_octet`, y 1..250)."""
    return [f"127.0.{first_third_octet + i // 250}.{1 + i % 250}" for i in range(count)]


# ---------------------------------------------------------------------------------------------
# hold: one attacker process
# ---------------------------------------------------------------------------------------------


def emit(record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def hold(args):
    # Attackers elsewhere would not take the server's CPU; here they share it. At the lowest
    # priority, the server is woken promptly to accept, and its listen queue does not overflow.
    if args.nice:
        os.nice(args.nice)
    host, port = args.target.rsplit(":", 1)
    target = (host, int(port))
    sources = args.sources.split(",")
    payload = PAYLOADS[args.payload]
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    deadline = start + args.hold_seconds
    pending = 0  # connects in progress
    next_index = 0
    connected = 0
    failed = {}  # errno name -> count
    open_since = {}  # fd -> (socket, connected at)
    closed_after = []  # seconds from connect to the server closing it
    answered = 0  # connections on which the server sent bytes (it should send none)
    connect_ms = []  # how long each connect took (a dropped SYN is retried after 1 s, 3 s, ...)
    ready_sent = False
    resolved_at = None

    def fail(reason):
        failed[reason] = failed.get(reason, 0) + 1

    while True:
        now = time.monotonic()
        # Start connects, at most `max_pending` at once (so that the listen backlog does not
        # overflow and SYNs are not retried a second later).
        while (
            next_index < args.count
            and pending < args.max_pending
            and (not args.rate or next_index < (now - start) * args.rate + args.max_pending)
        ):
            source = sources[next_index % len(sources)]
            next_index += 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
                sock.setblocking(False)
                code = sock.connect_ex(target)
            except OSError as error:
                sock.close()
                fail(errno.errorcode.get(error.errno, str(error.errno)))
                continue
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                fail(errno.errorcode.get(code, str(code)))
                continue
            pending += 1
            sel.register(sock, selectors.EVENT_WRITE, ("connecting", now))
        if resolved_at is None and next_index >= args.count and pending == 0:
            resolved_at = time.monotonic()
        if not ready_sent and resolved_at is not None and now - resolved_at >= args.settle_seconds:
            ready_sent = True
            emit(
                {
                    "event": "ready",
                    "seconds": round(now - start, 3),
                    "attempted": args.count,
                    "connected": connected,
                    "connect_failed": failed,
                    "held": len(open_since),
                    "closed_by_server": len(closed_after),
                    "connect_ms": latency(connect_ms),
                    "connects_over_900ms": sum(1 for ms in connect_ms if ms > 900),
                }
            )
        if now >= deadline:
            if not ready_sent:  # not every connect resolved in time: report what there is
                emit(
                    {
                        "event": "ready",
                        "incomplete": True,
                        "seconds": round(now - start, 3),
                        "attempted": next_index,
                        "connected": connected,
                        "connect_failed": dict(failed, still_connecting=pending),
                        "held": len(open_since),
                        "closed_by_server": len(closed_after),
                        "connect_ms": latency(connect_ms),
                        "connects_over_900ms": sum(1 for ms in connect_ms if ms > 900),
                    }
                )
            break
        timeout = max(0.0, min(0.2 if next_index >= args.count else 0.005, deadline - now))
        for key, events in sel.select(timeout):
            sock = key.fileobj
            state, since = key.data
            if state == "connecting":
                pending -= 1
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code != 0:
                    sel.unregister(sock)
                    sock.close()
                    fail(errno.errorcode.get(code, str(code)))
                    continue
                connected += 1
                at = time.monotonic()
                connect_ms.append((at - since) * 1000)
                try:
                    if payload:
                        sock.send(payload)
                except OSError:
                    sel.unregister(sock)
                    sock.close()
                    closed_after.append(0.0)
                    continue
                open_since[sock.fileno()] = (sock, at)
                sel.modify(sock, selectors.EVENT_READ, ("open", at))
                continue
            # Readable: the server closed it (EOF or reset), or it sent something.
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if data:
                answered += 1
                continue
            closed_after.append(time.monotonic() - since)
            del open_since[sock.fileno()]
            sel.unregister(sock)
            sock.close()
        if now - start > args.hold_seconds + 60:
            break
    still_open = len(open_since)
    for sock, _ in list(open_since.values()):
        try:
            sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()
    at_once = [s for s in closed_after if s < args.at_once_seconds]
    later = sorted(s for s in closed_after if s >= args.at_once_seconds)
    emit(
        {
            "event": "done",
            "attempted": args.count,
            "connected": connected,
            "connect_failed": failed,
            "closed_at_once": len(at_once),
            "closed_later": len(later),
            "closed_later_after_s": (
                [round(later[0], 2), round(later[len(later) // 2], 2), round(later[-1], 2)]
                if later
                else None
            ),
            "open_when_released": still_open,
            "server_sent_bytes_on": answered,
            "ready": ready_sent,
        }
    )


# ---------------------------------------------------------------------------------------------
# drill: the orchestrator
# ---------------------------------------------------------------------------------------------


class Server:
    """What /proc says about the server process."""

    def __init__(self, pid):
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def status(self):
        fields = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
        return fields

    def rss(self):
        return int(self.status()["VmRSS"].split()[0]) * 1024

    def hwm(self):
        return int(self.status()["VmHWM"].split()[0]) * 1024

    def fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / self.tick

    def alive(self):
        return os.path.exists(f"/proc/{self.pid}")


class Sampler(threading.Thread):
    """Samples RSS and open files every `interval` seconds."""

    def __init__(self, server, interval):
        super().__init__(daemon=True)
        self.server, self.interval = server, interval
        self.samples = []  # (monotonic, rss, fds)
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            try:
                self.samples.append((time.monotonic(), self.server.rss(), self.server.fds()))
            except (FileNotFoundError, ProcessLookupError):
                return
            self.stopping.wait(self.interval)

    def peak(self, since, until):
        window = [s for s in self.samples if since <= s[0] <= until]
        if not window:
            return None, None
        return max(s[1] for s in window), max(s[2] for s in window)


class Probe:
    """Calls /healthz and /v1/verify as a well-behaved client would, from 127.0.0.1."""

    def __init__(self, host, port, token, key, timeout):
        self.host, self.port, self.token, self.key, self.timeout = host, port, token, key, timeout
        self.conn = None
        self.body = json.dumps({"key": key})

    def _new(self):
        return http.client.HTTPConnection(
            self.host, self.port, timeout=self.timeout, source_address=("127.0.0.1", 0)
        )

    def open_persistent(self):
        self.conn = self._new()
        self.conn.connect()

    def call(self, what, fresh):
        """One call; returns a dict: what, fresh, ok, status, code, ms, error."""
        conn = self._new() if fresh else self.conn
        if conn is None:
            self.conn = conn = self._new()
        headers = {"Connection": "close"} if fresh else {}
        started = time.perf_counter()
        result = {"what": what, "fresh": fresh, "status": None, "code": None, "error": None, "t": time.monotonic()}
        try:
            if what == "healthz":
                conn.request("GET", "/healthz", headers=headers)
            else:
                headers = dict(headers, Authorization=f"Bearer {self.token}")
                headers["Content-Type"] = "application/json"
                conn.request("POST", "/v1/verify", body=self.body, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
            result["status"] = reply.status
            result["retry_after"] = reply.getheader("Retry-After")
            if what == "verify" and reply.status == 200:
                try:
                    result["code"] = json.loads(data).get("code")
                except ValueError:
                    result["code"] = "unparsable"
        except (OSError, http.client.HTTPException) as error:
            result["error"] = classify(error)
            if not fresh:
                conn.close()
                self.conn = None  # reconnects on the next call
        finally:
            if fresh:
                conn.close()
        result["ms"] = (time.perf_counter() - started) * 1000
        if what == "healthz":
            result["ok"] = result["status"] == 200
        else:
            result["ok"] = result["status"] == 200 and result["code"] == "VALID"
        result["shed"] = result["status"] == 503 and result.get("retry_after") is not None
        return result

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def classify(error):
    if isinstance(error, http.client.RemoteDisconnected):
        return "closed without an answer"
    if isinstance(error, ConnectionResetError):
        return "reset"
    if isinstance(error, BrokenPipeError):
        return "broken pipe"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timeout"
    return type(error).__name__


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-p * len(ordered) // 100)))  # nearest rank
    return ordered[min(rank, len(ordered)) - 1]


def summarize(results):
    """Per (what, fresh): counts of outcomes and latencies of the answered calls."""
    groups = {}
    for r in results:
        groups.setdefault((r["what"], r["fresh"]), []).append(r)
    out = {}
    for (what, fresh), rs in sorted(groups.items()):
        outcomes = {}
        for r in rs:
            if r["error"]:
                label = r["error"]
            elif what == "verify" and r["status"] == 200:
                label = f"200 {r['code']}"
            elif r["shed"]:
                label = f"{r['status']} Retry-After: {r['retry_after']}"
            else:
                label = str(r["status"])
            outcomes[label] = outcomes.get(label, 0) + 1
        answered = [r["ms"] for r in rs if r["status"] is not None]
        failed = [r["ms"] for r in rs if r["status"] is None]
        out[f"{what} ({'new connection each' if fresh else 'kept-alive connection'})"] = {
            "calls": len(rs),
            "ok": sum(1 for r in rs if r["ok"]),
            "shed_503": sum(1 for r in rs if r["shed"]),
            "outcomes": outcomes,
            "answered_ms": latency(answered),
            "unanswered_ms": latency(failed),
        }
    return out


def latency(ms):
    if not ms:
        return None
    return {
        "p50": round(percentile(ms, 50), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2),
    }


def run_calls(probe, calls, fresh, pause=0.0):
    results = []
    for i in range(calls * 2):
        results.append(probe.call("healthz" if i % 2 == 0 else "verify", fresh))
        if pause:
            time.sleep(pause)
    return results


def mib(n):
    return None if n is None else round(n / MIB, 1)


ATTACKERS = []  # every hold process started, so that a SIGTERM of the drill ends them too


def on_term(signum, frame):
    for p in ATTACKERS:
        if p.poll() is None:
            p.terminate()
    sys.exit(128 + signum)


def start_attackers(args, payload, total, processes, sources, hold_seconds):
    """Starts `processes` hold processes, splitting `total` connections and `sources`."""
    procs = []
    per = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
    for i in range(processes):
        mine = sources[i::processes]
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "hold",
            "--target",
            args.target,
            "--count",
            str(per[i]),
            "--sources",
            ",".join(mine),
            "--payload",
            payload,
            "--hold-seconds",
            str(hold_seconds),
            "--at-once-seconds",
            str(args.at_once_seconds),
            "--max-pending",
            str(args.max_pending),
            "--rate",
            str(args.rate),
        ]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1))
        ATTACKERS.append(procs[-1])
    return procs


def read_event(proc, event, timeout):
    """Waits for the JSON line `event` from `proc` (None if it does not come in time)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            return None
        record = json.loads(line)
        if record.get("event") == event:
            return record
    return None


def wait_ready(procs, timeout, keep_warm):
    """Waits for every attacker's `ready`, calling keep_warm() about every second meanwhile."""
    results = [None] * len(procs)
    threads = []

    def reader(i):
        results[i] = read_event(procs[i], "ready", timeout)

    for i in range(len(procs)):
        t = threading.Thread(target=reader, args=(i,), daemon=True)
        t.start()
        threads.append(t)
    end = time.monotonic() + timeout
    warm = []
    while any(t.is_alive() for t in threads) and time.monotonic() < end:
        warm.append(keep_warm())
        time.sleep(1.0)
    return results, warm


def add(records, field):
    total = 0
    for r in records:
        if r and isinstance(r.get(field), int):
            total += r[field]
    return total


def merge_failed(records):
    merged = {}
    for r in records:
        for name, count in (r or {}).get("connect_failed", {}).items():
            merged[name] = merged.get(name, 0) + count
    return merged


def print_calls(title, summary, out):
    out.append(f"  {title}:")
    for name, s in summary.items():
        lat = s["answered_ms"]
        lat_text = f"answered in p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms" if lat else "none answered"
        outcomes = ", ".join(f"{k} x{v}" for k, v in sorted(s["outcomes"].items()))
        out.append(f"    {name}: {s['ok']}/{s['calls']} ok; {outcomes}; {lat_text}")
        if s["unanswered_ms"]:
            u = s["unanswered_ms"]
            out.append(f"      (unanswered ones failed after p50 {u['p50']} ms, max {u['max']} ms)")


def listen_overflows():
    """The kernel's count of connections dropped because a listen queue was full (all sockets)."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        names, values = names.split(), values.split()
        if names and names[0] == "TcpExt:":
            return int(dict(zip(names[1:], values[1:])).get("ListenOverflows", 0))
    return None


def answered_all(results):
    """Every call answered: 200 (VALID for verify) or a 503 load-shed with Retry-After."""
    return bool(results) and all(r["ok"] or r["shed"] for r in results)


def flood_round(args, server, probe, sampler, base_rss, base_fds, number):
    """One flood of partial headers, the probes around it, and the state afterwards."""
    r = {}
    # A kept-alive connection opened before the flood: an established client (a gateway).
    probe.open_persistent()
    first = probe.call("healthz", fresh=False)
    # Source addresses of this round's own: a connection the server closed leaves its end in
    # TIME_WAIT for a minute, and a new SYN on the same address and port pair could meet it.
    sources = loopback_sources(1 + number * -(-args.addresses // 250), args.addresses)
    overflows_before = listen_overflows()
    cpu_before = server.cpu_seconds()
    t_flood = time.monotonic()
    procs = start_attackers(args, args.flood_payload, args.connections, args.processes, sources, args.hold_seconds)
    ready, during_setup = wait_ready(procs, args.hold_seconds, lambda: probe.call("healthz", fresh=False))
    t_ready = time.monotonic()
    r["held_fds"], r["held_rss"] = server.fds(), server.rss()

    # While the flood is held: the probes, on the kept-alive connection and on new ones.
    r["held_results"] = run_calls(probe, args.calls, fresh=False) + run_calls(probe, args.calls, fresh=True)
    r["probed_s"] = (t_ready - t_flood, time.monotonic() - t_flood)
    r["fds_after_probes"] = server.fds()

    # If new connections were turned away: until one is answered again (the header timeout
    # frees the slots), a call every 0.1 s.
    recovery = []
    if not answered_all([x for x in r["held_results"] if x["fresh"]]):
        while time.monotonic() - t_flood < args.hold_seconds + 5:
            recovery.append(probe.call("healthz", fresh=True))
            if recovery[-1]["ok"]:
                break
            probe.call("healthz", fresh=False)  # keeps the kept-alive connection from idling out
            time.sleep(0.1)
    fresh = [x for x in r["held_results"] + recovery if x["fresh"]]
    turned_away = [x["t"] - t_flood for x in fresh if not (x["ok"] or x["shed"])]
    r["turned_away"] = len([x for x in r["held_results"] if x["fresh"] and not (x["ok"] or x["shed"])])
    r["turned_away_from"] = min(turned_away) if turned_away else None
    r["turned_away_until"] = max(turned_away) if turned_away else None
    later = [x["t"] - t_flood for x in fresh if x["ok"] and turned_away and x["t"] - t_flood > max(turned_away)]
    r["recovered_after"] = min(later) if later else None
    r["recovery_calls"] = len(recovery)
    # Once the held connections are cut off (the attackers still running): the probes again.
    r["cut_results"] = run_calls(probe, args.calls, fresh=False) + run_calls(probe, args.calls, fresh=True)

    r["done"] = [read_event(p, "done", args.hold_seconds + 90) for p in procs]
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    t_released = time.monotonic()
    probe.close()
    overflows_after = listen_overflows()
    peak_rss, peak_fds = sampler.peak(t_flood, t_released)
    r["peak_rss"] = max(peak_rss or 0, r["held_rss"])
    r["peak_fds"] = max(peak_fds or 0, r["held_fds"])
    r["flood_cpu"] = server.cpu_seconds() - cpu_before
    r["flood_seconds"] = t_released - t_flood
    r["ready"], r["setup_s"] = ready, t_ready - t_flood
    r["during_setup"] = during_setup + [first]
    r["listen_overflows"] = (
        None if overflows_before is None or overflows_after is None else overflows_after - overflows_before
    )

    # Afterwards: back near the baseline? (Waits up to --settle-seconds for it.)
    allow = max(base_rss * args.rss_tolerance_pct / 100, args.rss_tolerance_mib * MIB)
    settle_start = time.monotonic()
    cpu_settle = server.cpu_seconds()
    while True:
        rss, fds = server.rss(), server.fds()
        if rss <= base_rss + allow and fds <= base_fds + args.fd_tolerance:
            break
        if time.monotonic() - settle_start >= args.settle_seconds:
            break
        time.sleep(0.5)
    r["settled_s"] = time.monotonic() - settle_start
    time.sleep(2.0)  # at least 2 s of an idle server to measure its CPU over
    idle_window = time.monotonic() - settle_start
    r["idle_cpu"] = (server.cpu_seconds() - cpu_settle) / idle_window
    r["idle_window"] = idle_window
    r["after_rss"], r["after_fds"] = server.rss(), server.fds()
    r["after_results"] = run_calls(probe, args.calls, fresh=True)
    probe.close()
    r["rss_allowed"] = base_rss + allow
    return r


def malloc_trim(pid):
    """Asks the server's allocator to give its free memory back (gdb: malloc_trim(0)); the RSS
    then, or None. Tells memory glibc keeps free (fragmented arenas) from memory still in use."""
    try:
        subprocess.run(
            ["gdb", "-p", str(pid), "-batch", "-ex", "call (int)malloc_trim(0)"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    time.sleep(0.5)
    return Server(pid).rss()


def extra_variants(args, server):
    """Connections that never send a request line (nothing, or HTTP/2 preface bytes): are they
    cut off by the header timeout too? Run side by side, each from addresses of its own."""
    variants = ("silent", "h2-prefix", "h2-preface")
    groups = {}
    for i, payload in enumerate(variants):
        sources = loopback_sources(100 + 10 * i, 10)
        groups[payload] = start_attackers(
            args, payload, args.silent_check, 1, sources, args.header_timeout_s + 5
        )
    out = {}
    for payload, procs in groups.items():
        ready = [read_event(p, "ready", 60) for p in procs]
        done = [read_event(p, "done", args.header_timeout_s + 60) for p in procs]
        for p in procs:
            p.wait(timeout=30)
        out[payload] = {
            "opened": add(ready, "connected"),
            "cut_off": add(done, "closed_at_once") + add(done, "closed_later"),
            "still_open": add(done, "open_when_released"),
        }
    time.sleep(1.0)
    out["fds_after"] = server.fds()
    return out


def turned_away_text(r):
    if r["turned_away_from"] is None:
        return "none turned away"
    text = (
        f"{r['turned_away']} of the calls while held were turned away (closed without an answer); "
        f"turned away from {r['turned_away_from']:.1f} s to {r['turned_away_until']:.1f} s after the flood began, "
    )
    if r["recovered_after"] is None:
        return text + "not answered again during the hold"
    return text + f"answered again from {r['recovered_after']:.1f} s"


def drill(args):
    host, port = args.target.rsplit(":", 1)
    server = Server(args.pid)
    probe = Probe(host, int(port), args.token, args.key, args.probe_timeout)

    # Warm traffic, then the baseline.
    warm = run_calls(probe, args.warm_calls, fresh=False) + run_calls(probe, 50, fresh=True)
    probe.close()
    bad = [r for r in warm if not r["ok"]]
    if bad:
        print(f"drill: warm-up calls failed: {bad[:3]}", file=sys.stderr)
        return 2
    time.sleep(args.baseline_wait)
    base_rss, base_fds = server.rss(), server.fds()

    sampler = Sampler(server, args.sample_interval)
    sampler.start()
    rounds = [flood_round(args, server, probe, sampler, base_rss, base_fds, n) for n in range(args.rounds)]
    sampler.stopping.set()
    trimmed = malloc_trim(args.pid) if args.malloc_trim_check else None
    extras = extra_variants(args, server) if args.silent_check > 0 else None

    # ---- checks ----
    checks = []  # (name, passed, detail)
    for n, r in enumerate(rounds, 1):
        tag = f"round {n}: " if len(rounds) > 1 else ""
        kept = [x for x in r["held_results"] if not x["fresh"]]
        fresh = [x for x in r["held_results"] if x["fresh"]]
        shed = sum(1 for x in r["held_results"] + r["cut_results"] + r["after_results"] if x["shed"])
        checks.append(
            (
                f"{tag}healthz/verify on a kept-alive connection answered while the flood is held",
                answered_all(kept),
                f"{sum(x['ok'] for x in kept)}/{len(kept)} 200 (VALID), {shed} shed with 503 in all",
            )
        )
        checks.append(
            (
                f"{tag}healthz/verify on new connections answered while the flood is held",
                answered_all(fresh),
                f"{sum(x['ok'] for x in fresh)}/{len(fresh)} 200 (VALID); " + turned_away_text(r),
            )
        )
        checks.append(
            (
                f"{tag}healthz/verify answered once new connections were answered again",
                answered_all(r["cut_results"]),
                f"{sum(x['ok'] for x in r['cut_results'])}/{len(r['cut_results'])}",
            )
        )
        checks.append(
            (
                f"{tag}healthz/verify answered after the flood",
                answered_all(r["after_results"]),
                f"{sum(x['ok'] for x in r['after_results'])}/{len(r['after_results'])}",
            )
        )
        checks.append(
            (
                f"{tag}RSS back within max({args.rss_tolerance_pct:g} %, {args.rss_tolerance_mib:g} MiB) of the baseline",
                r["after_rss"] <= r["rss_allowed"],
                f"{mib(base_rss)} -> peak {mib(r['peak_rss'])} -> {mib(r['after_rss'])} MiB "
                f"(allowed {mib(r['rss_allowed'])}; waited {r['settled_s']:.0f} s)",
            )
        )
        checks.append(
            (
                f"{tag}open files back within {args.fd_tolerance} of the baseline",
                r["after_fds"] <= base_fds + args.fd_tolerance,
                f"{base_fds} -> peak {r['peak_fds']} -> {r['after_fds']}",
            )
        )
        failed = merge_failed(r["ready"])
        checks.append(
            (
                f"{tag}connection cap kept the server's open files bounded (cap + 300), every connect completed",
                r["peak_fds"] <= args.max_connections + 300 and not failed,
                f"peak {r['peak_fds']} open files, cap {args.max_connections}; connect failures: {failed or 'none'}",
            )
        )
        checks.append(
            (
                f"{tag}server idle afterwards (< 20 % of a core: no spinning accept loop)",
                r["idle_cpu"] < 0.20,
                f"{100 * r['idle_cpu']:.1f} % of a core over {r['idle_window']:.0f} s",
            )
        )
    checks.append(("server still running", server.alive(), f"pid {args.pid}"))

    # ---- report ----
    lines = ["slow-client drill: report"]
    lines.append(
        f"  server pid {args.pid} on {args.target}; limits: header timeout {args.header_timeout_s:g} s, "
        f"max connections {args.max_connections}, per address {args.max_connections_per_address}, "
        f"in flight {args.max_in_flight}"
    )
    lines.append(f"  baseline (after {2 * args.warm_calls + 100} warm calls): RSS {mib(base_rss)} MiB, {base_fds} open files")
    per_address = -(-args.connections // args.addresses)
    for n, r in enumerate(rounds, 1):
        lines.append(
            f"  flood{f' {n}' if len(rounds) > 1 else ''}: {args.connections} connections from {args.addresses} "
            f"loopback addresses ({per_address} each) in {args.processes} processes, each sending {FLOOD_TEXT[args.flood_payload]}; "
            f"in place {r['setup_s']:.1f} s after the start"
        )
        lines.append(
            f"    connected {add(r['ready'], 'connected')}, connect failures {merge_failed(r['ready']) or 'none'}; "
            f"held by the server {add(r['ready'], 'held')}, closed by it at once {add(r['ready'], 'closed_by_server')}; "
            f"server open files while held {r['held_fds']}; connects that needed a SYN retry (> 0.9 s): "
            f"{add(r['ready'], 'connects_over_900ms')} (listen-queue overflows, machine-wide: {r['listen_overflows']})"
        )
        later = [d["closed_later_after_s"] for d in r["done"] if d and d.get("closed_later_after_s")]
        cut_text = (
            f"cut off by the server {min(x[0] for x in later)}..{max(x[2] for x in later)} s after connecting: "
            f"{add(r['done'], 'closed_later')}"
            if later
            else "cut off by the server later: none"
        )
        lines.append(
            f"    {cut_text}; closed at once in all: {add(r['done'], 'closed_at_once')}; "
            f"still open when let go ({args.hold_seconds:g} s after the start): {add(r['done'], 'open_when_released')}"
        )
        print_calls(
            f"while held ({r['probed_s'][0]:.1f} to {r['probed_s'][1]:.1f} s after the flood began; server open files "
            f"{r['held_fds']} before these calls, {r['fds_after_probes']} after)",
            summarize(r["held_results"]),
            lines,
        )
        lines.append("  new connections: " + turned_away_text(r))
        print_calls(
            "then, the flood never having turned new connections away"
            if r["turned_away_from"] is None
            else f"once new connections were answered again ({r['recovered_after']:.1f} s after the flood began)"
            if r["recovered_after"] is not None
            else "at the end of the hold (new connections still turned away)",
            summarize(r["cut_results"]),
            lines,
        )
        lines.append(
            f"  peak: RSS {mib(r['peak_rss'])} MiB, {r['peak_fds']} open files; server CPU "
            f"{r['flood_cpu']:.1f} s over the {r['flood_seconds']:.0f} s of the flood"
        )
        lines.append(
            f"  after: RSS {mib(r['after_rss'])} MiB, {r['after_fds']} open files "
            f"({r['settled_s']:.0f} s after the clients let go); idle CPU {100 * r['idle_cpu']:.1f} % of a core"
        )
        print_calls("after the flood", summarize(r["after_results"]), lines)
    lines.append(f"  VmHWM (peak RSS of the process): {mib(server.hwm())} MiB")
    if args.malloc_trim_check:
        lines.append(
            "  malloc_trim(0) in the server (gdb) afterwards: RSS "
            + (f"{mib(rounds[-1]['after_rss'])} -> {mib(trimmed)} MiB" if trimmed else "not measured (no gdb?)")
        )
    if extras:
        for payload, text in (
            ("silent", "nothing"),
            ("h2-prefix", repr(PAYLOADS["h2-prefix"].decode())),
            ("h2-preface", "the HTTP/2 preface, then nothing"),
        ):
            e = extras[payload]
            lines.append(
                f"  extra: {e['opened']} connections sending {text}: {e['cut_off']} cut off within the header "
                f"timeout + 5 s, {e['still_open']} still open then"
            )
    lines.append("  checks:")
    for name, passed, detail in checks:
        lines.append(f"    [{'PASS' if passed else 'FAIL'}] {name}: {detail}")
    if extras:
        leaked = sum(extras[p]["still_open"] for p in ("silent", "h2-prefix", "h2-preface"))
        lines.append(
            f"    [{'NOTE' if leaked else 'PASS'}] (not in the verdict) connections that never send a request "
            f"line are cut off by the header timeout too: "
            + (f"{leaked} of {sum(extras[p]['opened'] for p in ('silent', 'h2-prefix', 'h2-preface'))} were not" if leaked else "all were")
        )

    if args.json:
        report = {
            "settings": {k: v for k, v in vars(args).items() if k not in ("token", "key")},
            "baseline": {"rss_mib": mib(base_rss), "fds": base_fds},
            "rounds": [
                {
                    "setup_s": round(r["setup_s"], 2),
                    "probed_s": [round(x, 2) for x in r["probed_s"]],
                    "fds_after_probes": r["fds_after_probes"],
                    "ready": r["ready"],
                    "done": r["done"],
                    "listen_overflows": r["listen_overflows"],
                    "held": {"rss_mib": mib(r["held_rss"]), "fds": r["held_fds"]},
                    "peak": {"rss_mib": mib(r["peak_rss"]), "fds": r["peak_fds"]},
                    "after": {"rss_mib": mib(r["after_rss"]), "fds": r["after_fds"], "settled_s": round(r["settled_s"], 1)},
                    "flood_cpu_s": round(r["flood_cpu"], 2),
                    "idle_cpu_pct": round(100 * r["idle_cpu"], 1),
                    "during_setup": summarize(r["during_setup"]),
                    "while_held": summarize(r["held_results"]),
                    "new_connections_turned_away": r["turned_away"],
                    "new_connections_turned_away_from_s": r["turned_away_from"],
                    "new_connections_turned_away_until_s": r["turned_away_until"],
                    "new_connections_answered_again_after_s": r["recovered_after"],
                    "after_header_timeout": summarize(r["cut_results"]),
                    "after": summarize(r["after_results"]),
                }
                for r in rounds
            ],
            "vm_hwm_mib": mib(server.hwm()),
            "after_malloc_trim_rss_mib": mib(trimmed),
            "extras": extras,
            "checks": [{"name": n, "passed": p, "detail": d} for n, p, d in checks],
        }
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    print("\n".join(lines))
    return 0 if all(p for _, p, _ in checks) else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    h = sub.add_parser("hold", help="one attacker process")
    h.add_argument("--target", required=True, help="host:port")
    h.add_argument("--count", type=int, required=True)
    h.add_argument("--sources", required=True, help="comma-separated source addresses")
    h.add_argument("--payload", choices=sorted(PAYLOADS), default="partial")
    h.add_argument("--hold-seconds", type=float, required=True)
    h.add_argument("--max-pending", type=int, default=200)
    h.add_argument("--settle-seconds", type=float, default=1.0)
    h.add_argument("--at-once-seconds", type=float, default=2.0)
    h.add_argument("--nice", type=int, default=19, help="run at this niceness (0: as the caller)")
    h.add_argument("--rate", type=float, default=0, help="connects a second at most (0: no limit)")

    d = sub.add_parser("drill", help="the whole drill")
    d.add_argument("--target", required=True, help="host:port of the server")
    d.add_argument("--pid", type=int, required=True, help="the server's pid")
    d.add_argument("--token", default=os.environ.get("DRILL_TOKEN"), help="verifying service token (or DRILL_TOKEN)")
    d.add_argument("--key", default=os.environ.get("DRILL_KEY"), help="customer key (or DRILL_KEY)")
    d.add_argument("--connections", type=int, default=20000)
    d.add_argument("--rounds", type=int, default=2, help="floods one after the other (memory growth)")
    d.add_argument(
        "--flood-payload",
        choices=sorted(PAYLOADS),
        default="partial",
        help="what each flood connection sends: partial (the drill), silent (nothing), h2-prefix, h2-preface",
    )
    d.add_argument("--malloc-trim-check", action="store_true", help="afterwards, malloc_trim(0) in the server via gdb")
    d.add_argument("--processes", type=int, default=4)
    d.add_argument("--addresses", type=int, default=200)
    d.add_argument(
        "--max-pending",
        type=int,
        default=30,
        help="connects in progress at once per process",
    )
    d.add_argument(
        "--rate",
        type=float,
        default=1500,
        help="connects a second per process at most (0: no limit). Clients and server share the CPUs "
        "here: unpaced, the server's listen queue (backlog 128) overflows while it waits for a CPU, "
        "and each dropped SYN is retried only a second later",
    )
    d.add_argument("--hold-seconds", type=float, default=18.0)
    d.add_argument("--at-once-seconds", type=float, default=2.0)
    d.add_argument("--calls", type=int, default=200, help="calls of each endpoint per phase")
    d.add_argument("--warm-calls", type=int, default=500)
    d.add_argument("--baseline-wait", type=float, default=3.0)
    d.add_argument("--sample-interval", type=float, default=0.2)
    d.add_argument("--probe-timeout", type=float, default=5.0)
    d.add_argument("--settle-seconds", type=float, default=20.0)
    d.add_argument("--rss-tolerance-pct", type=float, default=20.0)
    d.add_argument("--rss-tolerance-mib", type=float, default=30.0)
    d.add_argument("--fd-tolerance", type=int, default=10)
    d.add_argument("--silent-check", type=int, default=100, help="connections per extra variant; 0: skip")
    d.add_argument("--header-timeout-s", type=float, default=10.0, help="the server's, for the report")
    d.add_argument("--max-connections", type=int, default=10000, help="the server's, for the report")
    d.add_argument("--max-connections-per-address", type=int, default=1000)
    d.add_argument("--max-in-flight", type=int, default=1024)
    d.add_argument("--json", help="also write the report as JSON here")
    args = parser.parse_args()
    if args.command == "hold":
        hold(args)
        return 0
    if not args.token or not args.key:
        parser.error("--token and --key (or DRILL_TOKEN and DRILL_KEY) are required")
    signal.signal(signal.SIGTERM, on_term)
    return drill(args)


if __name__ == "__main__":
    sys.exit(main())
