"""bench/compare_tls.py: the TLS section of bench/compare (`bench/compare --only tls`).

Owned by the "tlsbench" engineer; kept in its own file so that it and the rest of bench/compare
can change independently. It reuses compare's Postfix and Moat relays, its /proc CPU accounting
and its process handling (passed in as the module `cmp`). What it measures, in one run:

  1. Relay throughput over TLS versus plaintext, side by side: 5 KB, 1 recipient, 20 sessions,
     --msgs-per-conn as for W1, through `moat-loadgen run`. Plaintext: no STARTTLS from the sender,
     a sink without TLS. TLS: `--starttls` (STARTTLS inbound, one handshake per connection) and a
     sink with `--tls-cert`, so a relay with outbound opportunistic TLS uses it; the sink counts
     the TLS handshakes it saw, which says whether the relay's outbound leg was encrypted.
     Both relays run with TLS configured on both sides: Postfix with smtpd_tls_security_level = may
     (a generated certificate) and smtp_tls_security_level = may; moat with the same smtpd_tls_*
     and smtp_tls_security_level = may. Relay CPU ms per message from /proc, as in compare.
  2. Handshakes over the wire: N connections each doing only EHLO, STARTTLS, the handshake, EHLO,
     QUIT (`moat-loadgen send --starttls --handshake-only`), new sessions and resumed ones
     (`--tls-resume`, session tickets), plus the same dialogue without STARTTLS (EHLO, QUIT) as the
     baseline; CPU per connection of the server (all relay processes), handshakes per second, and
     handshakes per server CPU-second (= per core when the server is the bottleneck).
  3. Optionally the in-memory figures of bench/micro/tls_benchmark (--tls-benchmark PATH).

Certificates: an ECDSA P-256 self-signed certificate for localhost made with the openssl CLI in
the temp dir. Everything binds 127.0.0.1, is bounded (--tls-messages, --tls-handshakes,
--max-seconds) and stopped by PID; the temp dir is removed.
"""

import datetime
import json
import os
import shutil
import sys
import signal
import subprocess
import tempfile
import time

MESSAGE_SIZE = "5k"
SESSIONS = 20


def add_arguments(ap):
    g = ap.add_argument_group("TLS section (--only tls)")
    g.add_argument("--tls-messages", type=int, default=2000,
                   help="messages per TLS/plaintext relay run (default 2000)")
    g.add_argument("--tls-handshakes", type=int, default=1000,
                   help="connections per handshake run (default 1000)")
    g.add_argument("--tls-benchmark",
                   help="bench/micro tls_benchmark binary: add its in-memory handshake figures")


def make_cert(tmp):
    d = os.path.join(tmp, "tls")
    os.makedirs(d)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    # Postfix's daemons read them; a throw-away key in a private temp dir.
    os.chmod(d, 0o755)
    os.chmod(key, 0o644)
    return cert, key


def set_params(path, params):
    """Replaces (or appends) `name = value` lines of a main.cf."""
    with open(path) as f:
        lines = f.read().splitlines()
    seen = set()
    out = []
    for line in lines:
        name = line.split("=", 1)[0].strip() if "=" in line and not line.startswith("#") else None
        if name in params:
            out.append(f"{name} = {params[name]}")
            seen.add(name)
        else:
            out.append(line)
    out += [f"{k} = {v}" for k, v in params.items() if k not in seen]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def tls_params(cert, key):
    return {"smtpd_tls_security_level": "may", "smtpd_tls_cert_file": cert,
            "smtpd_tls_key_file": key, "smtp_tls_security_level": "may"}


def make_postfix(cmp, tmp, sink_port, cert, key):
    relay = cmp.Postfix(tmp, sink_port, 200)
    params = tls_params(cert, key)
    # moat does no reverse DNS lookup of the client; Postfix's smtpd would, and on a machine
    # whose resolver is slow for 127.0.0.x that wait (not CPU) would cap its connection rate.
    params["smtpd_peername_lookup"] = "no"
    set_params(os.path.join(relay.conf, "main.cf"), params)
    # tlsmgr hands out the session-ticket keys (tickets are on by default in Postfix 3.7).
    with open(os.path.join(relay.conf, "master.cf"), "a") as f:
        f.write("tlsmgr unix - - n 1000? 1 tlsmgr\n")
    return relay


def make_moat(cmp, tmp, sink_port, binary, cert, key):
    class TlsMoat(cmp.Moat):
        """compare's Moat, restarted once with the TLS parameters in its main.cf."""

        def start(self):
            if not super().start():
                return False
            self.stop()
            set_params(os.path.join(self.conf, "main.cf"), tls_params(cert, key))
            logf = open(self.log_path, "a")
            self.proc = cmp.start([self.binary, "serve", "-c", self.conf], stdout=logf,
                                  stderr=logf)
            if not cmp.wait_port(self.port, 10, self.proc):
                self.error = f"moat serve with TLS did not start (see {self.log_path})"
                self.stop()
                return False
            return True

    return TlsMoat(tmp, sink_port, binary)


def measured(cmp, relay, argv, timeout):
    """Runs a moat-loadgen command against `relay`: (its JSON or None, the error text, the relay's
    CPU seconds during the run, wall seconds)."""
    cpu0, t0 = relay.cpu(), time.monotonic()
    data, r = cmp.run_json(argv, timeout)
    wall, cpu = time.monotonic() - t0, relay.cpu() - cpu0
    relay.drain()
    error = None if data is not None else (
        f"moat-loadgen {argv[1]} failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    stderr = r.stderr.strip()[-500:] if data is not None and data["errors"] else ""
    return data, error, cpu, wall, stderr


def relay_run(cmp, args, relay, sink_port, cert, key, tls):
    argv = [args.loadgen, "run", "--relay", f"127.0.0.1:{relay.port}",
            "--sink", f"127.0.0.1:{sink_port}", "--sessions", str(SESSIONS),
            "--messages", str(args.tls_messages), "--duration", str(args.max_seconds),
            "--drain-timeout", str(args.drain_seconds), "--size", MESSAGE_SIZE,
            "--to", f"user%d@{cmp.DOMAIN}", "--to-count", str(cmp.TABLE_ROWS),
            "--msgs-per-conn", str(args.msgs_per_conn), "--source-ips", "10",
            "--timeout", "60", "--json", "--no-progress"]
    if tls:
        argv += ["--starttls", "--tls-cert", cert, "--tls-key", key]
    data, error, cpu, _, stderr = measured(cmp, relay, argv,
                                           args.max_seconds + args.drain_seconds + 120)
    if error:
        return dict(error=error)
    send = data["send"]
    accepted = send["messages"]
    return dict(accepted_per_s=send["msgs_per_sec"], e2e_per_s=data["msgs_per_sec"],
                cpu_ms_per_msg=cpu * 1000 / accepted if accepted else None, stderr=stderr,
                p99_ms=send["p99_ms"], errors=data["errors"], lost=data["lost"],
                inbound_handshakes=send["tls"]["handshakes"],
                outbound_handshakes=data["sink"]["tls"]["handshakes"],
                connections=send["connections"], sink_connections=data["sink"]["connections"])


def handshake_run(cmp, args, relay, mode):
    """mode: 'plain' (EHLO, QUIT), 'new' or 'resumed' (EHLO, STARTTLS, handshake, EHLO, QUIT)."""
    argv = [args.loadgen, "send", "--server", f"127.0.0.1:{relay.port}",
            "--sessions", str(SESSIONS), "--messages", str(args.tls_handshakes),
            "--duration", str(args.max_seconds), "--source-ips", "10", "--timeout", "60",
            "--json", "--no-progress"]
    argv.append("--handshake-only")
    if mode != "plain":
        argv.append("--starttls")
        if mode == "resumed":
            argv.append("--tls-resume")
    data, error, cpu, wall, stderr = measured(cmp, relay, argv, args.max_seconds + 120)
    if error:
        return dict(error=error)
    n = data["messages"]
    tls = data["tls"]
    return dict(connections=n, errors=data["errors"], per_s=n / data["elapsed_s"] if n else None,
                cpu_ms_per_conn=cpu * 1000 / n if n else None,
                per_cpu_s=n / cpu if n and cpu > 0 else None,
                handshakes=tls["handshakes"], resumed=tls["resumed"],
                handshake_p50_ms=tls["handshake_p50_ms"], handshake_p99_ms=tls["handshake_p99_ms"],
                wall_s=wall, stderr=stderr)


def median_dict(cmp, runs, keys):
    errors = [r["error"] for r in runs if "error" in r]
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return dict(error=errors[0] if errors else "no runs")
    out = {k: cmp.median_of(ok, k) for k in keys}
    out["runs"] = len(ok)
    failing = [r["stderr"] for r in ok if r.get("stderr")]
    if failing:
        out["stderr"] = failing[0]  # what the load generator said about its errors
    return out


RELAY_KEYS = ("accepted_per_s", "e2e_per_s", "cpu_ms_per_msg", "p99_ms", "errors", "lost",
              "inbound_handshakes", "outbound_handshakes", "connections", "sink_connections")
SHAKE_KEYS = ("connections", "errors", "per_s", "cpu_ms_per_conn", "per_cpu_s", "handshakes",
              "resumed", "handshake_p50_ms", "handshake_p99_ms")


def micro_benchmark(path):
    r = subprocess.run([path, "--benchmark_filter=BM_Handshake", "--benchmark_format=json",
                        "--benchmark_repetitions=3", "--benchmark_report_aggregates_only=true"],
                       capture_output=True, text=True, timeout=300)
    try:
        data = json.loads(r.stdout)
    except json.JSONDecodeError:
        return dict(error=f"tls_benchmark failed (exit {r.returncode}): {r.stderr.strip()[-200:]}")
    out = {}
    for b in data.get("benchmarks", []):
        if b.get("aggregate_name") == "median":
            name = b["run_name"].split("/")[-1]
            cpu_us = b["cpu_time"] if b.get("time_unit") == "us" else b["cpu_time"] / 1000
            out[name] = dict(cpu_ms=cpu_us / 1000, per_s=1e6 / cpu_us)
    return out


def main(args, cmp):
    """Runs the TLS section; writes compare-tls.md and compare-tls.json into --out."""
    for tool in ("postfix", "postmap", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"compare: {tool} not installed: run deploy/install-deps.sh")
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="moat-compare-tls-")
    os.chmod(tmp, 0o755)
    cmp.cleanup_actions.append(lambda: shutil.rmtree(tmp, ignore_errors=True))

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    results = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   machine=cmp.machine_line(), command=" ".join(["bench/compare"] + sys.argv[1:]),
                   loadavg_start=os.getloadavg(), relays={}, micro=None)
    skip = set(filter(None, args.skip.split(",")))
    try:
        cert, key = make_cert(tmp)
        sink_port = cmp.free_port()
        relays = []
        if "postfix" not in skip:
            relays.append(make_postfix(cmp, tmp, sink_port, cert, key))
        if "moat" not in skip:
            relays.append(make_moat(cmp, tmp, sink_port, args.moat, cert, key))
        for relay in relays:
            cmp.log(f"{relay.name}: starting with TLS")
            rr = results["relays"][relay.name] = dict(error=None)
            if not relay.start():
                rr["error"] = relay.error
                cmp.log(f"{relay.name}: not available ({relay.error})")
                relay.stop()
                continue
            for tls in (False, True):
                label = "tls" if tls else "plain"
                runs = []
                for i in range(args.runs):
                    cmp.log(f"{relay.name}: relay {label} run {i + 1}/{args.runs}")
                    runs.append(relay_run(cmp, args, relay, sink_port, cert, key, tls))
                rr[label] = median_dict(cmp, runs, RELAY_KEYS)
            for mode in ("plain", "new", "resumed"):
                runs = []
                for i in range(args.runs):
                    cmp.log(f"{relay.name}: handshakes {mode} run {i + 1}/{args.runs}")
                    runs.append(handshake_run(cmp, args, relay, mode))
                rr["handshake_" + mode] = median_dict(cmp, runs, SHAKE_KEYS)
            relay.stop()
        if args.tls_benchmark:
            cmp.log("in-memory handshakes (tls_benchmark)")
            results["micro"] = micro_benchmark(args.tls_benchmark)
    except KeyboardInterrupt:
        cmp.log("interrupted: cleaning up")
    finally:
        cmp.cleanup_all()
    results["loadavg_end"] = os.getloadavg()
    table = render(cmp, results)
    print(table)
    with open(os.path.join(args.out, "compare-tls.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "compare-tls.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)


def render(cmp, results):
    fmt, ratio = cmp.fmt, cmp.ratio
    la0 = " ".join(f"{x:.1f}" for x in results["loadavg_start"])
    la1 = " ".join(f"{x:.1f}" for x in results["loadavg_end"])
    lines = [f"TLS: moat vs Postfix, {results['date']}; {results['machine']}; "
             f"load average {la0} at the start, {la1} at the end",
             f"command: {results['command']}", "",
             f"Relay, {MESSAGE_SIZE.upper()}B x 1 rcpt, {SESSIONS} sessions, plaintext vs TLS "
             "(TLS = STARTTLS from the sender + the relay's outbound STARTTLS to the sink when it "
             "does it; \"out TLS\" = handshakes the sink saw / connections it got):", "",
             "| relay | mode | accepted msg/s | end-to-end msg/s | relay CPU ms/msg | p99 accept ms "
             "| in handshakes | out TLS | errors |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    rel = results["relays"]
    for name in ("postfix", "moat"):
        r = rel.get(name)
        if r is None:
            continue
        if r["error"]:
            lines.append(f"| {name} | | not available ({r['error']}) | | | | | | |")
            continue
        for mode in ("plain", "tls"):
            m = r.get(mode, {})
            if "error" in m:
                lines.append(f"| {name} | {mode} | failed: {m['error']} | | | | | | |")
                continue
            out_tls = (f"{fmt(m['outbound_handshakes'], 0)}/{fmt(m['sink_connections'], 0)}"
                       if m.get("sink_connections") else "-")
            if mode == "tls" and not m.get("outbound_handshakes"):
                out_tls += " (outbound plaintext)"
            lines.append(f"| {name} | {mode} | {fmt(m['accepted_per_s'])} | {fmt(m['e2e_per_s'])} | "
                         f"{fmt(m['cpu_ms_per_msg'], 3)} | {fmt(m['p99_ms'], 2)} | "
                         f"{fmt(m['inbound_handshakes'], 0)} | {out_tls} | {fmt(m['errors'], 0)} |")
        p, t = r.get("plain", {}), r.get("tls", {})
        if "error" not in p and "error" not in t and p and t:
            lines.append(f"| {name} | TLS/plain | {ratio(t['accepted_per_s'], p['accepted_per_s'])} | "
                         f"{ratio(t['e2e_per_s'], p['e2e_per_s'])} | "
                         f"{ratio(t['cpu_ms_per_msg'], p['cpu_ms_per_msg'])} | "
                         f"{ratio(t['p99_ms'], p['p99_ms'])} | | | |")
    both = all(n in rel and not rel[n]["error"] for n in ("postfix", "moat"))
    if both:
        for mode in ("plain", "tls"):
            p, m = rel["postfix"].get(mode, {}), rel["moat"].get(mode, {})
            if p and m and "error" not in p and "error" not in m:
                lines.append(f"| moat/Postfix | {mode} | {ratio(m['accepted_per_s'], p['accepted_per_s'])} | "
                             f"{ratio(m['e2e_per_s'], p['e2e_per_s'])} | "
                             f"{ratio(m['cpu_ms_per_msg'], p['cpu_ms_per_msg'])} | "
                             f"{ratio(m['p99_ms'], p['p99_ms'])} | | | |")
    lines += ["", f"Handshakes over the wire, {SESSIONS} sessions: \"new\"/\"resumed\" = EHLO, STARTTLS, "
              "TLS 1.3 handshake (full / ticket), EHLO, QUIT per connection; \"plain\" = the baseline "
              "without TLS (EHLO, QUIT). Server CPU = all relay processes; "
              "per CPU-s = connections per second of server CPU (one core's worth):", "",
              "| relay | kind | connections | conn/s | server CPU ms/conn | conn per server CPU-s "
              "| resumed | handshake p50 ms | p99 ms | errors |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("postfix", "moat"):
        r = rel.get(name)
        if r is None or r["error"]:
            continue
        for mode in ("plain", "new", "resumed"):
            h = r.get("handshake_" + mode, {})
            if "error" in h:
                lines.append(f"| {name} | {mode} | failed: {h['error']} | | | | | | | |")
                continue
            tls = mode != "plain"
            lines.append(f"| {name} | {mode} | {fmt(h['connections'], 0)} | {fmt(h['per_s'])} | "
                         f"{fmt(h['cpu_ms_per_conn'], 3)} | {fmt(h['per_cpu_s'], 0)} | "
                         f"{fmt(h['resumed'], 0) if tls else '-'} | "
                         f"{fmt(h['handshake_p50_ms'], 2) if tls else '-'} | "
                         f"{fmt(h['handshake_p99_ms'], 2) if tls else '-'} | {fmt(h['errors'], 0)} |")
    if both:
        for mode in ("new", "resumed"):
            p, m = rel["postfix"].get("handshake_" + mode, {}), rel["moat"].get("handshake_" + mode, {})
            if p and m and "error" not in p and "error" not in m:
                lines.append(f"| moat/Postfix | {mode} | | {ratio(m['per_s'], p['per_s'])} | "
                             f"{ratio(m['cpu_ms_per_conn'], p['cpu_ms_per_conn'])} | "
                             f"{ratio(m['per_cpu_s'], p['per_cpu_s'])} | | | | |")
    micro = results.get("micro")
    if micro:
        lines += ["", "In memory (bench/micro/tls_benchmark, client + server CPU per handshake, "
                  "median of 3):", ""]
        if "error" in micro:
            lines.append(f"tls_benchmark: {micro['error']}")
        else:
            lines += ["| handshake | CPU ms | per core per s |", "|---|---:|---:|"]
            for k, v in micro.items():
                lines.append(f"| {k} | {fmt(v['cpu_ms'], 3)} | {fmt(v['per_s'], 0)} |")
    return "\n".join(lines)
