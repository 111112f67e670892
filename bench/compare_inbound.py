"""bench/compare_inbound.py: the inbound sections of bench/compare (`--only accept`, `--only idle`).

Owned by the "inbound-bench" engineer; kept in its own file, like compare_tls.py, so that it and
the rest of bench/compare change independently. It reuses compare's Postfix and Moat relays,
its /proc CPU accounting and its process handling (passed in as the module `cmp`).

accept: the inbound path alone. Both relays accept and queue durably and deliver nothing during
  the measurement. Postfix: compare's private instance plus `defer_transports = smtp relay`, so
  smtpd and cleanup write (and fsync) every queue file and qmgr defers it without a delivery
  attempt. moat has no defer_transports: its next hop is a loopback port where nothing listens,
  so the first delivery attempt is refused and the destination backs off (minimal_backoff_time,
  300 s): a handful of failed connects per run, no delivery work. Both with
  smtpd_client_connection_count_limit = 0 (100 sessions from one address) and Postfix with
  smtpd_peername_lookup = no (moat does no reverse lookup). Drivers, with the same parameters for
  both relays: Postfix's smtp-source (-s S -m N -l 5120 -c, one message per connection, recipient
  user1@example.com from the 100,000-row relay_recipient_maps) and `moat-loadgen send` (same
  sessions, messages, size, one message per connection, recipients user%d@example.com). msgs/s =
  messages the relay accepted / driver wall time; relay CPU from /proc (all relay processes).
  fdatasyncs: moat = spool_commits from `moat stats` (one group commit = one write + fdatasync;
  a new segment adds a directory fsync, and delivery outcomes recorded in the journal also
  commit); Postfix = fsync + fdatasync calls counted by `strace -f -c` attached to the master and
  every child (strace slows the traced processes, so this is an extra run whose throughput is not
  reported; its syncs per message are, and syncs/s is that ratio times the untraced msgs/s).
  Medians of --runs runs.
idle: --idle-connections TCP connections that read the 220 greeting and then stay idle, to each
  relay; memory summed over every relay process (Postfix: master and all descendants, one smtpd
  per connection; moat: the one `moat serve` process), VmRSS and PSS (/proc/PID/smaps_rollup),
  before and with the connections. Postfix gets at most --idle-postfix-cap connections (a process
  each); its per-connection figure is extrapolated to --idle-connections and labelled so.

Everything binds 127.0.0.1, is bounded (message counts, --max-seconds, connection deadlines),
stopped by PID; the temp dir is removed. Writes compare-inbound.md and compare-inbound.json to
--out.
"""

import datetime
import glob
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import compare_tls  # set_params(): edit a main.cf in place

SIZE = 5120


def add_arguments(ap):
    g = ap.add_argument_group("inbound sections (--only accept, --only idle)")
    g.add_argument("--accept-messages", type=int, default=5000,
                   help="messages per accept-only run (default 5000)")
    g.add_argument("--accept-sessions", default="20,100",
                   help="session counts of the accept-only runs (default 20,100)")
    g.add_argument("--idle-connections", type=int, default=10000,
                   help="idle connections held open to moat (default 10000)")
    g.add_argument("--idle-postfix-cap", type=int, default=2000,
                   help="at most this many to Postfix, one smtpd process each (default 2000)")


# ---- helpers ----

def moat_stats(relay):
    """`moat stats` of a running compare Moat as a dict of ints ({} if it fails)."""
    r = subprocess.run([relay.binary, "stats", "-c", relay.conf], capture_output=True, text=True,
                       timeout=30)
    out = {}
    for line in r.stdout.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            out[name.strip()] = int(value)
    return out


def relay_pids(relay):
    root = relay.master_pid if relay.name == "postfix" else (relay.proc.pid if relay.proc else None)
    return cmp_module.descendants(root) if root else []


def memory_kb(pids):
    """(sum of VmRSS, sum of Pss) in KiB over pids; processes that vanished are skipped."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def postfix_queue_reset(relay):
    subprocess.run(["postsuper", "-c", relay.conf, "-d", "ALL"], capture_output=True, timeout=120)


def moat_queue_reset(relay):
    subprocess.run([relay.binary, "queue", "-c", relay.conf, "delete", "ALL"], capture_output=True,
                   timeout=120)


# ---- accept-only ----

def accepted_count(relay):
    if relay.name == "postfix":
        return relay.queue_files()
    return moat_stats(relay).get("messages_accepted", 0)


def driver_argv(cmp, args, driver, port, sessions, messages):
    if driver == "smtp-source":
        return ["smtp-source", "-c", "-s", str(sessions), "-m", str(messages), "-l", str(SIZE),
                "-f", "loadgen@client.example", "-t", f"user1@{cmp.DOMAIN}", f"127.0.0.1:{port}"]
    return [args.loadgen, "send", "--server", f"127.0.0.1:{port}", "--sessions", str(sessions),
            "--messages", str(messages), "--size", str(SIZE), "--msgs-per-conn", "1",
            "--to", f"user%d@{cmp.DOMAIN}", "--to-count", str(cmp.TABLE_ROWS),
            "--duration", str(args.max_seconds), "--timeout", "60", "--json", "--no-progress"]


def accept_run(cmp, args, relay, driver, sessions, n=None):
    n = n or args.accept_messages
    acc0 = accepted_count(relay)
    syncs0 = moat_stats(relay).get("spool_commits", 0) if relay.name == "moat" else None
    cpu0 = relay.cpu()
    t0 = time.monotonic()
    try:
        r = subprocess.run(driver_argv(cmp, args, driver, relay.port, sessions, n),
                           capture_output=True, text=True, timeout=args.max_seconds + 120)
    except subprocess.TimeoutExpired:  # smtp-source has no duration cap: count what got in
        r = subprocess.CompletedProcess([], -1, "", f"timed out after {args.max_seconds + 120} s")
    wall = time.monotonic() - t0
    cpu1 = relay.cpu()
    accepted = accepted_count(relay) - acc0
    out = dict(accepted=accepted, wall_s=wall, exit=r.returncode,
               per_s=accepted / wall if accepted else None,
               cpu_ms_per_msg=(cpu1 - cpu0) * 1000 / accepted if accepted else None)
    if relay.name == "moat":
        syncs = moat_stats(relay).get("spool_commits", 0) - syncs0
        out.update(syncs=syncs, syncs_per_s=syncs / wall,
                   msgs_per_sync=accepted / syncs if syncs else None)
        moat_queue_reset(relay)
    else:
        postfix_queue_reset(relay)
    if r.returncode != 0:
        out["stderr"] = (r.stderr or r.stdout).strip()[-300:]
    return out


def start_postfix_traced(cmp, relay, trace_dir):
    """compare's Postfix.start(), with `postfix start` run under strace.

    strace -f --seccomp-bpf follows the master and every process it forks, and stops only at
    the traced calls (execve, fsync, fdatasync), so the relay runs at nearly full speed. -ff
    writes one file per process; strace exits when the master does.
    """
    os.makedirs(trace_dir)
    relay.tracer = cmp.start(["strace", "-f", "-ff", "--seccomp-bpf", "-qq", "-e",
               "trace=execve,fsync,fdatasync", "-o", os.path.join(trace_dir, "t"),
               "postfix", "-c", relay.conf, "start"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pidfile = os.path.join(relay.queue, "pid", "master.pid")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not os.path.exists(pidfile):
        time.sleep(0.1)
    if not os.path.exists(pidfile):
        relay.error = "postfix did not start under strace"
        return False
    time.sleep(0.2)  # the master writes its PID file before its content is complete
    with open(pidfile) as f:
        relay.master_pid = int(f.read().strip())
    cmp.cleanup_actions.append(relay.stop)
    if not cmp.wait_port(relay.port, 20):
        relay.error = "postfix smtpd port never opened"
        return False
    return True


def postfix_sync_runs(cmp, args, relay, trace_dir, sessions_list, rr):
    """Restarts Postfix under strace and counts its syncs over one smtp-source run per session
    count (at most 1,000 messages each). strace costs throughput, so these runs' msgs/s are
    not reported; only syncs per accepted message are."""
    if shutil.which("strace") is None:
        rr["sync_error"] = "strace not installed"
        return
    if not start_postfix_traced(cmp, relay, trace_dir):
        rr["sync_error"] = relay.error
        relay.stop()
        return
    accepted = 0
    for sessions in sessions_list:
        cmp.log(f"accept: postfix under strace (fsync count), {sessions} sessions")
        accepted += accept_run(cmp, args, relay, "smtp-source", sessions,
                               min(args.accept_messages, 1000))["accepted"]
    relay.stop()
    try:
        relay.tracer.wait(30)
    except subprocess.TimeoutExpired:
        cmp.log("strace still running 30 s after postfix stopped; counting what it wrote")
    rr["syncs_by_program"] = count_syncs(trace_dir)  # complete once strace has exited
    rr["accepted_total"] = accepted


def count_syncs(trace_dir):
    """fsync+fdatasync calls per program name from strace -ff files (after strace exited)."""
    counts = {}
    for path in glob.glob(os.path.join(trace_dir, "t.*")):
        program, n = "?", 0
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("execve("):
                    program = os.path.basename(line.split('"')[1])
                elif line.startswith(("fsync(", "fdatasync(")):
                    n += 1
        if n:
            counts[program] = counts.get(program, 0) + n
    return counts


def accept_relay_params(relay):
    params = {"smtpd_client_connection_count_limit": "0"}
    if relay.name == "postfix":
        params.update({"defer_transports": "smtp relay", "smtpd_peername_lookup": "no"})
    compare_tls.set_params(os.path.join(relay.conf, "main.cf"), params)


def accept_section(cmp, args, tmp, skip):
    sessions_list = [int(s) for s in args.accept_sessions.split(",") if s]
    closed_port = cmp.free_port()  # the next hop: nothing listens there
    relays = []
    if "postfix" not in skip:
        relays.append(cmp.Postfix(tmp, closed_port, max(200, 2 * max(sessions_list) + 50)))
    if "moat" not in skip:
        relays.append(cmp.Moat(tmp, closed_port, args.moat))
    results = {}
    for relay in relays:
        rr = results[relay.name] = dict(error=None, runs={})
        if relay.name == "postfix":
            accept_relay_params(relay)
            ok = relay.start()
        else:
            ok = start_moat_with(cmp, relay, accept_relay_params)
        if not ok:
            rr["error"] = relay.error
            cmp.log(f"{relay.name}: not available ({relay.error})")
            relay.stop()
            continue
        for sessions in sessions_list:
            for driver in ("smtp-source", "moat-loadgen"):
                runs = []
                for i in range(args.runs):
                    cmp.log(f"accept: {relay.name}, {driver}, {sessions} sessions, run "
                            f"{i + 1}/{args.runs}")
                    runs.append(accept_run(cmp, args, relay, driver, sessions))
                rr["runs"][f"{driver} s={sessions}"] = summarize(cmp, runs)
        relay.stop()
        if relay.name == "postfix":
            postfix_sync_runs(cmp, args, relay, os.path.join(tmp, "strace"), sessions_list, rr)
    return results


def start_moat_with(cmp, relay, edit):
    """compare's Moat.start() writes main.cf and starts; restart once with `edit` applied."""
    if not relay.start():
        return False
    relay.stop()
    edit(relay)
    logf = open(relay.log_path, "a")
    relay.proc = cmp.start([relay.binary, "serve", "-c", relay.conf], stdout=logf, stderr=logf)
    if not cmp.wait_port(relay.port, 10, relay.proc):
        relay.error = f"moat serve did not restart (see {relay.log_path})"
        relay.stop()
        return False
    return True


def summarize(cmp, runs):
    ok = [r for r in runs if r.get("accepted")]
    if not ok:
        return dict(error=runs[0].get("stderr", "nothing accepted") if runs else "no runs")
    keys = ("accepted", "per_s", "cpu_ms_per_msg", "syncs", "syncs_per_s", "msgs_per_sync")
    out = {k: cmp.median_of(ok, k) for k in keys}
    out["runs"] = len(ok)
    out["failed_runs"] = sum(1 for r in runs if r.get("exit"))
    failing = [r["stderr"] for r in runs if r.get("stderr")]
    if failing:
        out["stderr"] = failing[0]
    return out


# ---- idle connections ----

def open_idle(port, n, deadline_s, batch=200):
    """Opens n connections to 127.0.0.1:port and reads each one's 220 greeting.

    Batches of `batch` so a relay that starts a process per connection is not flooded past its
    listen backlog. Returns (sockets, greeted count, seconds taken). Bounded by deadline_s.
    """
    t0 = time.monotonic()
    deadline = t0 + deadline_s
    socks, greeted = [], 0
    sel = selectors.DefaultSelector()
    while len(socks) < n and time.monotonic() < deadline:
        waiting = {}
        for _ in range(min(batch, n - len(socks))):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
            waiting[s] = b""
            sel.register(s, selectors.EVENT_READ)
        while waiting and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                buf = waiting.get(s, b"") + data
                if not data or b"\r\n" in buf:
                    sel.unregister(s)
                    del waiting[s]
                    if buf.startswith(b"220"):
                        greeted += 1
                else:
                    waiting[s] = buf
        for s in list(waiting):
            sel.unregister(s)
    sel.close()
    return socks, greeted, time.monotonic() - t0


def idle_relay_params(relay):
    params = {"smtpd_client_connection_count_limit": "0"}
    if relay.name == "postfix":
        params["smtpd_peername_lookup"] = "no"
    compare_tls.set_params(os.path.join(relay.conf, "main.cf"), params)


def idle_section(cmp, args, tmp, skip):
    fd_limit = raise_fd_limit()
    closed_port = cmp.free_port()
    results = dict(fd_limit=fd_limit)
    for name in ("postfix", "moat"):
        if name in skip:
            continue
        if name == "postfix":
            n = args.idle_postfix_cap
            relay = cmp.Postfix(tmp, closed_port, n + 100)
            idle_relay_params(relay)
            ok = relay.start()
        else:
            n = args.idle_connections
            relay = cmp.Moat(tmp, closed_port, args.moat)
            ok = start_moat_with(cmp, relay, idle_relay_params)
        n = min(n, fd_limit - 200)
        rr = results[name] = dict(error=None, wanted=n)
        if not ok:
            rr["error"] = relay.error
            relay.stop()
            continue
        time.sleep(1.0)
        rr["before_rss_kb"], rr["before_pss_kb"] = memory_kb(relay_pids(relay))
        rr["processes_before"] = len(relay_pids(relay))
        cmp.log(f"idle: {name}: opening {n} connections")
        socks, greeted, took = open_idle(relay.port, n, deadline_s=max(240, args.max_seconds))
        time.sleep(2.0)  # let the relay settle (Postfix: every smtpd past its start-up)
        pids = relay_pids(relay)
        rr["after_rss_kb"], rr["after_pss_kb"] = memory_kb(pids)
        rr.update(greeted=greeted, open_s=took, processes=len(pids))
        if name == "moat":
            rr["connections_open"] = moat_stats(relay).get("connections_open")
        for s in socks:
            s.close()
        if greeted:
            rr["rss_per_conn"] = (rr["after_rss_kb"] - rr["before_rss_kb"]) * 1024 / greeted
            rr["pss_per_conn"] = (rr["after_pss_kb"] - rr["before_pss_kb"]) * 1024 / greeted
        cmp.log(f"idle: {name}: {greeted} greeted in {took:.1f} s; {rr.get('rss_per_conn')} "
                "bytes RSS per connection")
        relay.stop()
    return results


# ---- main and report ----

def main(args, cmp):
    global cmp_module
    cmp_module = cmp
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="moat-compare-inbound-")
    os.chmod(tmp, 0o755)  # Postfix's unprivileged daemons must reach their queue
    cmp.cleanup_actions.append(lambda: shutil.rmtree(tmp, ignore_errors=True))

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    skip = set(filter(None, args.skip.split(",")))
    results = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   machine=cmp.machine_line(), command=" ".join(["bench/compare"] + sys.argv[1:]),
                   loadavg_start=os.getloadavg(), section=args.only)
    try:
        if args.only in ("accept", "inbound"):
            results["accept"] = accept_section(cmp, args, os.path.join(tmp, "accept"), skip)
        if args.only in ("idle", "inbound"):
            results["idle"] = idle_section(cmp, args, os.path.join(tmp, "idle"), skip)
    except KeyboardInterrupt:
        cmp.log("interrupted: cleaning up")
    finally:
        cmp.cleanup_all()
    results["loadavg_end"] = os.getloadavg()
    table = render(cmp, results, args)
    print(table)
    with open(os.path.join(args.out, "compare-inbound.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "compare-inbound.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)


cmp_module = None


def render(cmp, results, args):
    fmt, ratio = cmp.fmt, cmp.ratio
    la0 = " ".join(f"{x:.1f}" for x in results["loadavg_start"])
    la1 = " ".join(f"{x:.1f}" for x in results["loadavg_end"])
    lines = [f"Inbound: moat vs Postfix, {results['date']}; {results['machine']}; "
             f"load average {la0} at the start, {la1} at the end",
             f"command: {results['command']}"]
    acc = results.get("accept")
    if acc:
        lines += ["", f"Accept only (5 KB, 1 rcpt, one message per connection, "
                  f"{args.accept_messages} messages per run, medians of {args.runs}; nothing "
                  "delivered; msgs/s = accepted / driver wall time; syncs = fdatasync+fsync "
                  "(moat: spool group commits, per run; Postfix: fsync calls of its cleanup "
                  "processes counted by strace in extra smtp-source runs whose speed is not "
                  "reported, syncs/s = msgs/s / msgs per sync)):", "",
                  "| sessions | driver | relay | msgs/s | relay CPU ms/msg | syncs/s | msgs/sync |",
                  "|---:|---|---|---:|---:|---:|---:|"]
        for sessions in [int(s) for s in args.accept_sessions.split(",") if s]:
            for driver in ("smtp-source", "moat-loadgen"):
                cells = {}
                for name in ("postfix", "moat"):
                    r = acc.get(name)
                    if r is None:
                        continue
                    if r["error"]:
                        lines.append(f"| {sessions} | {driver} | {name} | not available "
                                     f"({r['error']}) | | | |")
                        continue
                    m = dict(r["runs"].get(f"{driver} s={sessions}", {}))
                    if "error" in m:
                        lines.append(f"| {sessions} | {driver} | {name} | failed: {m['error']} "
                                     "| | | |")
                        continue
                    if name == "postfix":
                        syncs = r.get("syncs_by_program", {}).get("cleanup")
                        mps = r.get("accepted_total", 0) / syncs if syncs else None
                        m["msgs_per_sync"] = mps
                        m["syncs_per_s"] = m["per_s"] / mps if mps and m.get("per_s") else None
                    cells[name] = m
                    note = f" ({m['failed_runs']} runs failed)" if m.get("failed_runs") else ""
                    lines.append(f"| {sessions} | {driver} | {name} | {fmt(m['per_s'])}{note} | "
                                 f"{fmt(m['cpu_ms_per_msg'], 3)} | {fmt(m.get('syncs_per_s'))} | "
                                 f"{fmt(m.get('msgs_per_sync'), 2)} |")
                if "postfix" in cells and "moat" in cells:
                    p, m = cells["postfix"], cells["moat"]
                    lines.append(f"| {sessions} | {driver} | moat/Postfix | "
                                 f"{ratio(m['per_s'], p['per_s'])} | "
                                 f"{ratio(m['cpu_ms_per_msg'], p['cpu_ms_per_msg'])} | "
                                 f"{ratio(m.get('syncs_per_s'), p.get('syncs_per_s'))} | "
                                 f"{ratio(m.get('msgs_per_sync'), p.get('msgs_per_sync'))} |")
        p = acc.get("postfix") or {}
        if p.get("syncs_by_program"):
            by = ", ".join(f"{k} {v:,}" for k, v in sorted(p["syncs_by_program"].items()))
            lines += ["", f"Postfix fsync+fdatasync calls in its runs under strace, by program, for "
                      f"{p['accepted_total']:,} accepted messages: {by} (only cleanup's count as "
                      "the accept path's; the others log deferrals or run at start/stop)."]
    idle = results.get("idle")
    if idle:
        lines += ["", f"Idle connections (each read the 220 greeting, then idle; memory summed "
                  f"over every relay process; RLIMIT_NOFILE {idle.get('fd_limit')}):", "",
                  "| relay | connections | processes | RSS before MiB | RSS with MiB | PSS before MiB "
                  "| PSS with MiB | RSS bytes/conn | PSS bytes/conn | "
                  f"RSS for {args.idle_connections:,} conns MiB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name in ("postfix", "moat"):
            r = idle.get(name)
            if r is None:
                continue
            if r["error"]:
                lines.append(f"| {name} | not available ({r['error']}) | | | | | | | | |")
                continue
            mib = lambda kb: fmt(kb / 1024)
            per = r.get("rss_per_conn")
            total = (r["before_rss_kb"] * 1024 + per * args.idle_connections) / 2**20 if per else None
            label = fmt(total)
            if name == "postfix" and r["greeted"] < args.idle_connections:
                label += f" (extrapolated from {r['greeted']:,})"
            lines.append(f"| {name} | {r['greeted']:,} of {r['wanted']:,} | {r['processes']} | "
                         f"{mib(r['before_rss_kb'])} | {mib(r['after_rss_kb'])} | "
                         f"{mib(r['before_pss_kb'])} | {mib(r['after_pss_kb'])} | "
                         f"{fmt(per, 0)} | {fmt(r.get('pss_per_conn'), 0)} | {label} |")
        if idle.get("postfix", {}).get("rss_per_conn") and idle.get("moat", {}).get("rss_per_conn"):
            p, m = idle["postfix"], idle["moat"]
            lines.append(f"| Postfix/moat per connection | | | | | | | "
                         f"{ratio(p['rss_per_conn'], m['rss_per_conn'])} | "
                         f"{ratio(p['pss_per_conn'], m['pss_per_conn'])} | |")
    return "\n".join(lines)
