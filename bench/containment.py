#!/usr/bin/env python3
"""The compromise-containment simulation, repeatable by anyone.

A legitimate user sends about 20 messages an hour from one address; the
same password leaks and is used from 40 other addresses of the loopback
range (127.0.0.10-49) sending as fast as they can. The server runs with
the volume-spike signal answering `defer` (the legitimate address, known
for longer than `spare_known_after`, is spared) and a webhook to a
receiver this script starts. Reported:

  - hostile messages accepted (250 after DATA) before containment,
  - seconds from the first hostile login to containment (the signal's
    time, from the webhook notice),
  - webhook latency (notice made -> received here),
  - the legitimate user's refused messages (goal: 0).

    bench/containment.py                      # target/debug/portcullis
    bench/containment.py --binary target/release/portcullis --duration 30

Needs python3 only (smtplib, http.server). The user's past sending (20 an
hour over the last day) is written into the user store's history first,
so the volume signal starts from the user's own baseline, as it would on a
server that has been running.
"""

import argparse
import http.server
import json
import os
import shutil
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time

USER, PASSWORD = "alice", "leaked but correct"
FROM, TO = "alice@example.test", "friend@example.test"
MSG = "From: <alice@example.test>\r\nTo: <friend@example.test>\r\nSubject: sim\r\n\r\nHello.\r\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hook(http.server.BaseHTTPRequestHandler):
    notices = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Hook.notices.append((time.time(), json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def client(addr, port):
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="sim.test", timeout=30,
                     source_address=(addr, 0))
    s.ehlo()
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo()
    s.login(USER, PASSWORD)
    return s


def send(s):
    """250 after DATA, or the first refusal's code."""
    code, _ = s.mail(FROM)
    if code != 250:
        s.rset()
        return code
    code, _ = s.rcpt(TO)
    if code != 250:
        s.rset()
        return code
    code, _ = s.data(MSG)
    return code


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(os.path.dirname(__file__), "..", "target", "debug", "portcullis"))
    ap.add_argument("--duration", type=float, default=20, help="seconds of hostile sending")
    ap.add_argument("--hostile", type=int, default=40, help="hostile addresses")
    ap.add_argument("--legit-interval", type=float, default=180, help="seconds between legitimate messages (180: 20 an hour)")
    ap.add_argument("--warmup", type=float, default=6, help="seconds the legitimate address is known before the attack")
    args = ap.parse_args()

    data = tempfile.mkdtemp(prefix="portcullis-containment-")
    port, admin, hook_port = free_port(), free_port(), free_port()
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", hook_port), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    config = os.path.join(data, "portcullis.toml")
    with open(config, "w") as f:
        f.write(f"""hostname = "sim.test"
data_dir = "{data}"
[limits]
max_connection_rate = 100000
max_connections_per_address = 100
[limits.auth]
allow = []
[admin]
address = "127.0.0.1:{admin}"
[[listener]]
name = "submission"
address = "127.0.0.1:{port}"
tls = "starttls"
auth = "required"
[containment]
webhook = "http://127.0.0.1:{hook_port}/portcullis"
webhook_secret = "simulation"
spare_known_after = "5s"
[containment.volume_spike]
factor = 5.0
min_messages = 30
answer = "defer"
[containment.many_networks]
max_networks = 3
answer = "defer"
[containment.after_guessing]
answer = "suspend"
""")
    binary = os.path.abspath(args.binary)
    add = subprocess.run([binary, "user", "add", USER, "--password-stdin", "--config", config],
                         input=PASSWORD + "\n", text=True, capture_output=True)
    if add.returncode != 0:
        sys.exit(add.stderr)
    # 20 messages an hour over the last day: the user's own baseline.
    db = sqlite3.connect(os.path.join(data, "users.sqlite"))
    now_hour = int(time.time() * 1000) // 3_600_000
    db.executemany("INSERT INTO sent_hourly (user, hour, messages, recipients) VALUES (?, ?, 20, 20)",
                   [(USER, now_hour - h) for h in range(1, 25)])
    db.commit()
    db.close()
    log = open(os.path.join(data, "server.log"), "w")
    server = subprocess.Popen([binary, "serve", "--config", config], stdout=log, stderr=log)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("the server did not start; see " + log.name)
                time.sleep(0.1)
        results = run(args, port)
    finally:
        server.terminate()
        server.wait()
        hook.shutdown()
    notices = [n for n in Hook.notices if n[1]["identity"] == USER]
    report(args, results, notices)
    shutil.rmtree(data, ignore_errors=True)


def run(args, port):
    legit = {"sent": 0, "refused": 0}
    hostile = {"accepted": [], "refused": 0, "first_login": None}
    lock = threading.Lock()
    stop = threading.Event()

    def legit_loop():
        s = client("127.0.0.1", port)
        while True:
            code = send(s)
            with lock:
                legit["sent"] += 1
                legit["refused"] += code != 250
            if stop.wait(args.legit_interval):
                break
        # One more after the attack: still untouched?
        code = send(s)
        with lock:
            legit["sent"] += 1
            legit["refused"] += code != 250
        s.quit()

    def hostile_loop(addr):
        try:
            s = client(addr, port)
        except (smtplib.SMTPException, OSError):
            return
        with lock:
            if hostile["first_login"] is None:
                hostile["first_login"] = time.time()
        while not stop.is_set():
            try:
                code = send(s)
            except (smtplib.SMTPException, OSError):
                return
            with lock:
                if code == 250:
                    hostile["accepted"].append(time.time())
                else:
                    hostile["refused"] += 1
            if code != 250:
                stop.wait(0.2)

    threads = [threading.Thread(target=legit_loop)]
    threads[0].start()
    time.sleep(args.warmup)
    attackers = [threading.Thread(target=hostile_loop, args=(f"127.0.0.{10 + i}",)) for i in range(args.hostile)]
    for t in attackers:
        t.start()
    time.sleep(args.duration)
    stop.set()
    for t in attackers + threads:
        t.join()
    return legit, hostile


def report(args, results, notices):
    legit, hostile = results
    print(f"hostile addresses: {args.hostile}, hostile sending for {args.duration:.0f} s")
    if not notices:
        print(f"NOT CONTAINED: hostile messages accepted: {len(hostile['accepted'])}")
        return
    received, notice = notices[0]
    contained = notice["at_ms"] / 1000
    late = sum(1 for t in hostile["accepted"] if t > contained)
    print(f"signal: {notice['signal']} -> {notice['answer']} "
          f"({notice['evidence']['count']} messages in the hour over a threshold of {notice['evidence']['threshold']}); "
          f"spared: {', '.join(notice['spared']) or '-'}")
    print(f"hostile messages accepted before containment: {len(hostile['accepted'])} "
          f"({late} of them were being written when the signal fired; refused after: {hostile['refused']})")
    print(f"seconds from the first hostile login to containment: {contained - hostile['first_login']:.2f}")
    print(f"webhook latency: {(received - contained) * 1000:.0f} ms")
    print(f"legitimate user's messages: {legit['sent']}, refused: {legit['refused']}")


if __name__ == "__main__":
    main()
