"""Low-level WebSocket probe for refusal and malformed-frame tests.

  probe.py connect ...           try to open a session; print the outcome
  probe.py frames ... F1 F2 ...  open a session, send each raw text frame (a
                                 file path prefixed with @, or `big:N` for an
                                 N-byte frame), print what came back for each
Output is one JSON object per line.
"""
import argparse
import asyncio
import base64
import json
import ssl
import sys

import websockets


def ssl_context(args):
    if not args.url.startswith("wss://"):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def connect(args):
    headers = {}
    if args.password is not None:
        token = base64.b64encode(f"{args.user or args.station}:{args.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    subprotocols = [s for s in args.subprotocols.split(",") if s] if args.subprotocols else None
    return websockets.connect(
        f"{args.url}/ocpp/{args.station}",
        subprotocols=subprotocols,
        ssl=ssl_context(args),
        additional_headers=headers,
        open_timeout=10,
        max_size=None,
        ping_interval=None,
        **({"host": args.connect_host} if args.connect_host else {}),
    )


def out(**fields):
    print(json.dumps(fields), flush=True)


async def probe_connect(args):
    try:
        async with connect(args) as ws:
            out(outcome="connected", subprotocol=ws.subprotocol, connection=ws.response.headers.get("Connection"))
    except websockets.exceptions.InvalidStatus as e:
        out(outcome="http_status", status=e.response.status_code)
    except ssl.SSLError as e:
        out(outcome="tls_error", error=str(e))
    except (ConnectionResetError, BrokenPipeError, EOFError) as e:
        out(outcome="tls_error", error=f"{type(e).__name__}: {e}")
    except websockets.exceptions.InvalidHandshake as e:
        # With TLS 1.3 the server judges the client certificate after the client
        # considers the handshake done; its alert then surfaces while reading the
        # HTTP response, as the cause of the handshake error.
        cause = e.__cause__ or e.__context__
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__cause__ or cause.__context__
        chain = []
        c = e
        while c is not None and len(chain) < 5:
            chain.append(f"{type(c).__name__}: {c}")
            c = c.__cause__ or c.__context__
        if cause is not None:
            out(outcome="tls_error", error=str(cause))
        elif any(x.startswith("EOFError") for x in chain):
            # The server ended the connection before any HTTP response: a TLS-level refusal.
            out(outcome="tls_error", error=" <- ".join(chain))
        else:
            out(outcome="handshake_error", error=" <- ".join(chain))
    except OSError as e:
        out(outcome="tls_error", error=f"{type(e).__name__}: {e}")


async def probe_frames(args):
    async with connect(args) as ws:
        for spec in args.frames:
            if spec.startswith("big:"):
                n = int(spec[4:])
                text = '[2,"big","Heartbeat",{"customData":{"vendorId":"' + "x" * n + '"}}]'
            elif spec.startswith("@"):
                with open(spec[1:], encoding="utf-8") as f:
                    text = f.read()
            else:
                text = spec
            try:
                await ws.send(text)
                reply = await asyncio.wait_for(ws.recv(), timeout=10)
                out(sent=spec[:80], reply=json.loads(reply))
            except websockets.exceptions.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
                out(sent=spec[:80], closed=code)
                return


async def main(args):
    if args.mode == "connect":
        await probe_connect(args)
    else:
        await probe_frames(args)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["connect", "frames"])
    p.add_argument("--url", required=True)
    p.add_argument("--station", required=True)
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--connect-host", help="connect here instead of the URL's host (which stays the TLS SNI name)")
    p.add_argument("--subprotocols", default="ocpp2.0.1", help="comma-separated; empty for none")
    p.add_argument("frames", nargs="*")
    a = p.parse_intermixed_args()
    try:
        asyncio.run(main(a))
    except Exception as e:
        out(outcome="error", kind=type(e).__name__, error=str(e))
        sys.exit(1)
