"""A charging station built on the PyPI `ocpp` package (an implementation we did
not write), used to check that Anchorpoint interoperates.

Prints one JSON object per completed step on stdout; exits non-zero on failure.
"""
import argparse
import asyncio
import base64
import json
import ssl
import sys
from datetime import datetime, timezone

import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result


class Station(ChargePoint):
    """Answers the CSMS calls the tests send, reporting each one on stdout."""

    args = None
    pending_key = None

    @on("TriggerMessage")
    async def on_trigger(self, requested_message, **_):
        emit("received", action="TriggerMessage", requested_message=requested_message)
        ok = requested_message == "SignChargingStationCertificate"
        return call_result.TriggerMessage(status="Accepted" if ok else "NotImplemented")

    @after("TriggerMessage")
    async def after_trigger(self, requested_message, **_):
        if requested_message != "SignChargingStationCertificate":
            return
        # A02: a fresh key pair made here, a CSR with CN = identity, O = OrganizationName.
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, self.id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.args.org),
        ])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
        self.pending_key = key
        res = await self.call(
            call.SignCertificate(
                csr=csr.public_bytes(serialization.Encoding.PEM).decode(),
                certificate_type="ChargingStationCertificate",
            )
        )
        emit("sign_certificate", status=res.status)

    @on("CertificateSigned")
    async def on_certificate_signed(self, certificate_chain, certificate_type=None, **_):
        certs = x509.load_pem_x509_certificates(certificate_chain.encode())
        leaf_key = certs[0].public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        mine = self.pending_key and self.pending_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if not mine or leaf_key != mine or certs[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value != self.id:
            emit("certificate_signed", status="Rejected")
            return call_result.CertificateSigned(status="Rejected")
        if self.args.new_cert_out:
            with open(self.args.new_cert_out, "w") as f:
                f.write(certificate_chain)
            with open(self.args.new_key_out, "wb") as f:
                f.write(
                    self.pending_key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
        emit("certificate_signed", status="Accepted", serial=format(certs[0].serial_number, "x"), type=certificate_type)
        return call_result.CertificateSigned(status="Accepted")

    @on("GetVariables")
    async def on_get_variables(self, get_variable_data, **_):
        emit("received", action="GetVariables", data=get_variable_data)
        results = []
        for item in get_variable_data:
            known = item["component"]["name"] == "OCPPCommCtrlr" and item["variable"]["name"] == "HeartbeatInterval"
            results.append(
                {
                    "attribute_status": "Accepted" if known else "UnknownVariable",
                    "component": item["component"],
                    "variable": item["variable"],
                    **({"attribute_value": "300"} if known else {}),
                }
            )
        return call_result.GetVariables(get_variable_result=results)

    @on("Reset")
    async def on_reset(self, type, **_):
        emit("received", action="Reset", type=type)
        return call_result.Reset(status="Scheduled" if type == "OnIdle" else "Accepted")


def ssl_context(args):
    if not args.url.startswith("wss://"):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def emit(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


async def main(args):
    headers = {}
    if args.password is not None:
        token = base64.b64encode(f"{args.station}:{args.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    async with websockets.connect(
        f"{args.url}/ocpp/{args.station}",
        subprotocols=["ocpp2.0.1"],
        ssl=ssl_context(args),
        additional_headers=headers,
        open_timeout=10,
        **({"host": args.connect_host} if args.connect_host else {}),
    ) as ws:
        emit("connected", subprotocol=ws.subprotocol)
        cp = Station(args.station, ws, response_timeout=10)
        cp.args = args
        runner = asyncio.create_task(cp.start())
        boot = await cp.call(
            call.BootNotification(
                charging_station={
                    "model": "Interop-1",
                    "vendor_name": "PyOCPP",
                    "serial_number": "SN-" + args.station,
                    "firmware_version": "1.2.3",
                },
                reason="PowerUp",
            )
        )
        emit("boot", status=boot.status, interval=boot.interval, current_time=boot.current_time)
        if "heartbeat" in args.steps:
            hb = await cp.call(call.Heartbeat())
            emit("heartbeat", current_time=hb.current_time)
        if "status" in args.steps:
            now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
            await cp.call(
                call.StatusNotification(timestamp=now, connector_status="Available", evse_id=1, connector_id=1)
            )
            emit("status", ok=True)
        if "security" in args.steps:
            now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
            await cp.call(call.SecurityEventNotification(type="StartupOfTheDevice", timestamp=now, tech_info="interop"))
            emit("security", ok=True)
        if "meter" in args.steps:
            now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
            await cp.call(
                call.MeterValues(evse_id=1, meter_value=[{"timestamp": now, "sampled_value": [{"value": 1234.5}]}])
            )
            emit("meter", ok=True)
        if "datatransfer" in args.steps:
            dt = await cp.call(call.DataTransfer(vendor_id="com.example.interop", message_id="ping", data="hello"))
            emit("datatransfer", status=dt.status)
        if "serve" in args.steps:
            emit("serving", seconds=args.serve_seconds)
            try:
                await asyncio.wait_for(asyncio.shield(runner), timeout=args.serve_seconds)
            except asyncio.TimeoutError:
                pass
        runner.cancel()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="wss://host:port or ws://host:port")
    p.add_argument("--station", required=True)
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--password")
    p.add_argument("--connect-host", help="connect here instead of the URL's host (which stays the TLS SNI name)")
    p.add_argument("--steps", default="boot,heartbeat,status")
    p.add_argument("--serve-seconds", type=float, default=20.0, help="with step 'serve': answer CSMS calls this long")
    p.add_argument("--org", default="Default Organization", help="OrganizationName, the O of CSRs")
    p.add_argument("--new-cert-out", help="where to save a certificate chain received with CertificateSigned")
    p.add_argument("--new-key-out", help="where to save its private key")
    a = p.parse_args()
    try:
        asyncio.run(main(a))
    except Exception as e:  # reported to the Rust test, which asserts on it
        emit("error", kind=type(e).__name__, message=str(e))
        sys.exit(1)
