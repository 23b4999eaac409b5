"""A station that leaves CSMS calls unanswered, on raw OCPP-J frames (the
`websockets` package; no OCPP library in between, so nothing answers for it).

It boots, then reads the CSMS's calls (those that arrive while one of its own
calls waits for an answer are handled after the answer):
- a call named by --drop-on is not answered: the station waits --linger seconds
  and closes the connection (the CSMS cannot know whether it acted on it);
- CertificateSigned is answered Accepted, TriggerMessage Accepted, and with
  --accept-set-variables SetVariables Accepted (its values are printed: the
  test learns a password the CSMS generated, A01);
- with --sign N, it sends N SignCertificate requests right after booting, each
  with a fresh P-256 key, and prints each key's SHA-256 of SubjectPublicKeyInfo.

Prints one JSON object per event on stdout; exits non-zero on failure.
"""
import argparse
import asyncio
import base64
import hashlib
import json
import ssl
import sys

import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def emit(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def spki_sha256(public_key):
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def ssl_context(args):
    if not args.url.startswith("wss://"):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


async def main(args):
    headers = {}
    if args.password is not None:
        token = base64.b64encode(f"{args.station}:{args.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    drop_on = set(filter(None, args.drop_on.split(",")))
    async with websockets.connect(
        f"{args.url}/ocpp/{args.station}",
        subprotocols=["ocpp2.0.1"],
        ssl=ssl_context(args),
        additional_headers=headers,
        open_timeout=10,
    ) as ws:
        emit("connected")
        next_id = 0
        loop = asyncio.get_running_loop()

        deferred = []

        class Dropped(Exception):
            pass

        async def on_call(mid, action, payload):
            fields = {}
            if action == "CertificateSigned":
                leaf = x509.load_pem_x509_certificates(payload["certificateChain"].encode())[0]
                fields["spki"] = spki_sha256(leaf.public_key())
                fields["serial"] = format(leaf.serial_number, "x")
            if action == "SetVariables":
                fields["variables"] = [d["variable"]["name"] for d in payload["setVariableData"]]
                if args.accept_set_variables:
                    fields["values"] = [d["attributeValue"] for d in payload["setVariableData"]]
            emit("received", action=action, **fields)
            if action in drop_on:
                await asyncio.sleep(args.linger)
                emit("dropping", action=action)
                raise Dropped()
            if action in ("CertificateSigned", "TriggerMessage"):
                await ws.send(json.dumps([3, mid, {"status": "Accepted"}]))
            if action == "SetVariables" and args.accept_set_variables:
                results = [
                    {"attributeStatus": "Accepted", "component": d["component"], "variable": d["variable"]}
                    for d in payload["setVariableData"]
                ]
                await ws.send(json.dumps([3, mid, {"setVariableResult": results}]))

        async def read_until(deadline, answer_to=None):
            """Handles the CSMS's calls until `answer_to` is answered or the deadline."""
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=remaining))
                except asyncio.TimeoutError:
                    return None
                if frame[0] == 2 and answer_to is not None:
                    # Handled once the station's own calls are answered.
                    deferred.append(frame)
                elif frame[0] == 2:
                    await on_call(frame[1], frame[2], frame[3])
                elif frame[1] == answer_to:
                    return frame

        async def call(action, payload):
            nonlocal next_id
            next_id += 1
            mid = f"st-{next_id}"
            await ws.send(json.dumps([2, mid, action, payload]))
            frame = await read_until(loop.time() + 10, mid)
            if frame is None:
                raise RuntimeError(f"{action} was not answered")
            status = frame[2].get("status") if frame[0] == 3 else frame[2]
            emit("answer", action=action, status=status)

        try:
            await call(
                "BootNotification",
                {"chargingStation": {"model": "Unanswered-1", "vendorName": "RawFrames"}, "reason": "PowerUp"},
            )
            for _ in range(args.sign):
                key = ec.generate_private_key(ec.SECP256R1())
                name = x509.Name([
                    x509.NameAttribute(NameOID.COMMON_NAME, args.station),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, args.org),
                ])
                csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
                emit("csr", spki=spki_sha256(key.public_key()))
                pem = csr.public_bytes(serialization.Encoding.PEM).decode()
                await call("SignCertificate", {"csr": pem, "certificateType": "ChargingStationCertificate"})
            for frame in deferred:
                await on_call(frame[1], frame[2], frame[3])
            await read_until(loop.time() + args.serve_seconds)
            emit("done")
        except Dropped:
            return


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="wss://host:port or ws://host:port")
    p.add_argument("--station", required=True)
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--password")
    p.add_argument("--drop-on", default="", help="comma-separated actions: receive, do not answer, close")
    p.add_argument("--linger", type=float, default=0.0, help="seconds to wait before closing after a dropped call")
    p.add_argument("--accept-set-variables", action="store_true", help="answer SetVariables Accepted")
    p.add_argument("--sign", type=int, default=0, help="SignCertificate requests to send after booting")
    p.add_argument("--org", default="Default Organization", help="OrganizationName, the O of CSRs")
    p.add_argument("--serve-seconds", type=float, default=20.0, help="how long to read the CSMS's calls")
    a = p.parse_args()
    try:
        asyncio.run(main(a))
    except Exception as e:  # reported to the Rust test, which asserts on it
        emit("error", kind=type(e).__name__, message=str(e))
        sys.exit(1)
