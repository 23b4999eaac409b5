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
    # Values of SetVariables calls this station accepted, by variable name.
    set_values = {}

    async def route_message(self, raw_msg):
        """B06.FR.05/B05.FR.??: with --items-per-message / --bytes-per-message, a
        GetVariables or SetVariables beyond them is refused with a CALLERROR, as
        a strict station does (counting the whole frame it received)."""
        msg = json.loads(raw_msg)
        if msg[0] == 2 and msg[2] in ("GetVariables", "SetVariables"):
            items = msg[3].get("getVariableData") or msg[3].get("setVariableData") or []
            size = len(raw_msg.encode())
            emit("frame", action=msg[2], items=len(items), bytes=size)
            code = None
            if self.args.items_per_message and len(items) > self.args.items_per_message:
                code = "OccurrenceConstraintViolation"
            elif self.args.bytes_per_message and size > self.args.bytes_per_message:
                code = "FormatViolation"
            elif self.args.fail_variable and any(i["variable"]["name"] == self.args.fail_variable for i in items):
                code = "GenericError"
            if code:
                emit("refused", action=msg[2], code=code, items=len(items), bytes=size)
                await self._send(json.dumps([4, msg[1], code, f"{len(items)} items, {size} bytes", {}]))
                return
        await super().route_message(raw_msg)

    def limit_results(self, get_variable_data):
        """DeviceDataCtrlr limits this station has, or None if the items are not all limits."""
        limits = {
            ("ItemsPerMessage", "GetVariables"): self.args.items_per_message,
            ("BytesPerMessage", "GetVariables"): self.args.bytes_per_message,
            ("ItemsPerMessage", "SetVariables"): self.args.items_per_message,
            ("BytesPerMessage", "SetVariables"): self.args.bytes_per_message,
        }
        out = []
        for item in get_variable_data:
            key = (item["variable"]["name"], item["variable"].get("instance"))
            if item["component"]["name"] != "DeviceDataCtrlr" or key not in limits:
                return None
            value = limits[key]
            out.append({
                "attribute_status": "Accepted" if value else "UnknownVariable",
                "component": item["component"],
                "variable": item["variable"],
                **({"attribute_value": str(value)} if value else {}),
            })
        return out

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
        limits = self.limit_results(get_variable_data)
        if limits is not None:
            return call_result.GetVariables(get_variable_result=limits)
        results = []
        for item in get_variable_data:
            name = item["variable"]["name"]
            if name in self.set_values:
                results.append({"attribute_status": "Accepted", "component": item["component"],
                                "variable": item["variable"], "attribute_value": self.set_values[name]})
                continue
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

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data, **_):
        emit("received", action="SetVariables", data=set_variable_data)
        results = []
        for item in set_variable_data:
            self.set_values[item["variable"]["name"]] = item["attribute_value"]
            results.append({"attribute_status": "Accepted", "component": item["component"], "variable": item["variable"]})
        return call_result.SetVariables(set_variable_result=results)

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
        if "report-set-limits" in args.steps:
            # B06: the SetVariables limits told in a report, not asked for.
            now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
            data = [
                {"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": name, "instance": "SetVariables"},
                 "variable_attribute": [{"type": "Actual", "value": str(value), "mutability": "ReadOnly"}]}
                for name, value in (("ItemsPerMessage", args.items_per_message), ("BytesPerMessage", args.bytes_per_message))
            ]
            await cp.call(call.NotifyReport(request_id=1, generated_at=now, seq_no=0, report_data=data))
            emit("report", ok=True)
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
        if "flood" in args.steps:
            for i in range(args.flood_count):
                dt = await cp.call(
                    call.DataTransfer(vendor_id="com.example.flood", message_id=str(i), data="x" * args.flood_bytes)
                )
                reason = (dt.status_info or {}).get("reason_code")
                emit("flood", n=i, status=dt.status, reason_code=reason)
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
    p.add_argument("--items-per-message", type=int, help="refuse GetVariables/SetVariables with more items")
    p.add_argument("--bytes-per-message", type=int, help="refuse GetVariables/SetVariables frames longer than this")
    p.add_argument("--fail-variable", help="refuse (GenericError) any GetVariables/SetVariables naming this variable")
    p.add_argument("--flood-count", type=int, default=0, help="with step 'flood': DataTransfers to send")
    p.add_argument("--flood-bytes", type=int, default=60000, help="with step 'flood': characters of data in each")
    a = p.parse_args()
    try:
        asyncio.run(main(a))
    except Exception as e:  # reported to the Rust test, which asserts on it
        emit("error", kind=type(e).__name__, message=str(e))
        sys.exit(1)
