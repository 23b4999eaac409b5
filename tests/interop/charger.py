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
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result


class Station(ChargePoint):
    """Answers the CSMS calls the tests send, reporting each one on stdout."""

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
    a = p.parse_args()
    try:
        asyncio.run(main(a))
    except Exception as e:  # reported to the Rust test, which asserts on it
        emit("error", kind=type(e).__name__, message=str(e))
        sys.exit(1)
