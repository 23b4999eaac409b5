"""Server CPU per security-profile-1/2 login (issue 11), read from the server's
own /proc/PID/stat (utime + stime) around N sequential connects, each a
WebSocket upgrade with HTTP Basic, a BootNotification and its answer, a close.

Starts `csms serve` twice on a fresh SQLite data directory:
  1. with the success cache off (`password_cache_entries = 0`): every login runs
     PBKDF2, as every login did before issue 11;
  2. with the defaults, for: bare TLS handshakes (the yardstick), an operator-chosen
     password after its first login (success cache), a CSMS-generated password (A01,
     keyed HMAC verifier), the same two on the plain profile-1 listener, and wrong
     passwords (each still costs one PBKDF2).

    .venv/bin/python bench/basic_auth_cpu.py --csms target/release/csms --n 500

Prints one JSON object per scenario: microseconds of server CPU per connect.
Needs the `websockets` package. No assertions: a measurement, not a test.
"""
import argparse
import asyncio
import base64
import json
import os
import ssl
import subprocess
import sys
import tempfile
import urllib.request

import websockets

TICK = os.sysconf("SC_CLK_TCK")
BOOT = [2, "b1", "BootNotification", {"chargingStation": {"model": "Bench-1", "vendorName": "Bench"}, "reason": "PowerUp"}]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Server:
    def __init__(self, csms, data, env):
        self.base = [csms, "--data-dir", data]
        self.proc = subprocess.Popen(
            self.base + ["serve", "--ocpp-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--ocpp-plain-addr", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "RUST_LOG": "warn", **env},
        )
        for line in self.proc.stdout:
            if line.startswith("listening "):
                f = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
                self.ocpp, self.api, self.plain = f["ocpp"], f["api"], f["plain"]
                break
        self.tls = ssl.create_default_context(cafile=os.path.join(data, "pki/csms-root.pem"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def cli(csms, data, *args):
    return subprocess.run([csms, "--data-dir", data, *args], check=True, capture_output=True, text=True).stdout


def basic(station, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{station}:{password}".encode()).decode()}


async def login(server, station, password, tls=True):
    url = f"wss://{server.ocpp}/ocpp/{station}" if tls else f"ws://{server.plain}/ocpp/{station}"
    try:
        async with websockets.connect(url, subprotocols=["ocpp2.0.1"], ssl=server.tls if tls else None,
                                      additional_headers=basic(station, password), open_timeout=30) as ws:
            await ws.send(json.dumps(BOOT))
            answer = json.loads(await ws.recv())
            return answer[2].get("status")
    except websockets.exceptions.InvalidStatus as e:
        return e.response.status_code


async def tls_handshake(server):
    host, port = server.ocpp.rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port), ssl=server.tls, server_hostname="localhost")
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, ssl.SSLError):
        pass


async def generate_password(server, token, station, password, tls=True):
    """A01: the station is connected and accepts SetVariables; returns the generated password."""
    url = f"wss://{server.ocpp}/ocpp/{station}" if tls else f"ws://{server.plain}/ocpp/{station}"
    async with websockets.connect(url, subprotocols=["ocpp2.0.1"], ssl=server.tls if tls else None,
                                  additional_headers=basic(station, password)) as ws:
        await ws.send(json.dumps(BOOT))
        await ws.recv()

        def post():
            req = urllib.request.Request(f"http://{server.api}/api/v1/stations/{station}/password", data=b"{}", method="POST",
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            return json.loads(urllib.request.urlopen(req, timeout=30).read())

        answer = asyncio.create_task(asyncio.to_thread(post))
        call = json.loads(await ws.recv())
        data = call[3]["setVariableData"]
        await ws.send(json.dumps([3, call[1], {"setVariableResult": [
            {"attributeStatus": "Accepted", "component": d["component"], "variable": d["variable"]} for d in data]}]))
        assert (await answer)["switched"], "the CSMS did not switch to the generated password"
        return data[0]["attributeValue"]


async def measure(server, name, n, one):
    before = cpu_seconds(server.proc.pid)
    results = {}
    for _ in range(n):
        r = await one()
        results[str(r)] = results.get(str(r), 0) + 1
    used = cpu_seconds(server.proc.pid) - before
    print(json.dumps({"scenario": name, "connects": n, "server_cpu_us_per_connect": round(used / n * 1e6), "results": results}), flush=True)
    return used / n


async def main(a):
    data = tempfile.mkdtemp(prefix="basic-auth-cpu-")
    csms = a.csms
    chosen = "an-operator-chosen-pw-1"
    for sid, profile in [("P2-CHOSEN", 2), ("P2-GEN", 2), ("P1-CHOSEN", 1), ("P1-GEN", 1)]:
        cli(csms, data, "station", "add", sid, "--profile", str(profile), "--password", chosen)
    token = cli(csms, data, "token", "--tenant", "default", "--role", "operator").strip()
    lenient = {"ANCHORPOINT_LOGIN_FAILURES_PER_STATION": "100000000", "ANCHORPOINT_LOGIN_FAILURES_PER_SOURCE": "100000000"}

    s = Server(csms, data, {"ANCHORPOINT_PASSWORD_CACHE_ENTRIES": "0", **lenient})
    try:
        await measure(s, "tls_handshake_only", a.n, lambda: tls_handshake(s))
        await measure(s, "p2_chosen_pbkdf2_every_login (cache off, as before issue 11)", a.pbkdf2_n, lambda: login(s, "P2-CHOSEN", chosen))
    finally:
        s.stop()

    s = Server(csms, data, lenient)
    try:
        p2 = await generate_password(s, token, "P2-GEN", chosen)
        p1 = await generate_password(s, token, "P1-GEN", chosen, tls=False)
        await login(s, "P2-CHOSEN", chosen)  # first login: PBKDF2, then cached
        await login(s, "P1-CHOSEN", chosen, tls=False)
        tls = await measure(s, "tls_handshake_only", a.n, lambda: tls_handshake(s))
        cached = await measure(s, "p2_chosen_success_cache", a.n, lambda: login(s, "P2-CHOSEN", chosen))
        keyed = await measure(s, "p2_generated_keyed_hmac", a.n, lambda: login(s, "P2-GEN", p2))
        await measure(s, "p1_chosen_success_cache", a.n, lambda: login(s, "P1-CHOSEN", chosen, tls=False))
        await measure(s, "p1_generated_keyed_hmac", a.n, lambda: login(s, "P1-GEN", p1, tls=False))
        await measure(s, "p2_wrong_password (one PBKDF2 each)", a.pbkdf2_n, lambda: login(s, "P2-GEN", "a-wrong-password-000"))
        print(json.dumps({"p2_cached_over_tls_handshake": round(cached / tls, 2), "p2_keyed_over_tls_handshake": round(keyed / tls, 2)}))
    finally:
        s.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--csms", required=True)
    p.add_argument("--n", type=int, default=500, help="connects per cheap scenario")
    p.add_argument("--pbkdf2-n", type=int, default=100, help="connects per PBKDF2 scenario")
    asyncio.run(main(p.parse_args()))
