"""Drives uidcast with a third-party client (python3-websockets) and prints what it saw.

Each line is "name value"; spec/integration/interop_spec.lua checks them. Run:
    /usr/bin/python3 spec/interop/client.py PORT
"""
import asyncio
import sys

import websockets


async def main(port: int) -> None:
    url = f"ws://127.0.0.1:{port}/"
    alice = await websockets.connect(url)
    bob1 = await websockets.connect(url)
    bob2 = await websockets.connect(url)

    await alice.send("py-alice")
    print("login", await alice.recv())
    for bob in (bob1, bob2):
        await bob.send("py-bob")
        await bob.recv()

    await alice.send("py-bob:hello: from python")
    print("routed", await bob1.recv(), "|", await bob2.recv())

    # A message sent in three fragments must arrive whole.
    await alice.send(iter(["py-bob:frag", "men", "ted"]))
    print("fragmented", await bob1.recv())
    await bob2.recv()

    await alice.send(b"py-bob:\x00\x01binary")
    got = await bob1.recv()
    print("binary", type(got).__name__, got.hex())
    await bob2.recv()

    big = "x" * 100_000
    await alice.send("py-bob:" + big)
    print("big", len(await bob1.recv()))
    await bob2.recv()

    await bob1.send("all:to everyone")
    print("broadcast", await alice.recv(), "|", await bob1.recv(), "|", await bob2.recv())

    pong = await alice.ping(b"are you there")
    await asyncio.wait_for(pong, 5)
    print("pong ok")

    await bob1.close(code=4000, reason="bye")
    await alice.send("py-bob:after close")
    print("after_close", await bob2.recv())

    for ws in (alice, bob2):
        await ws.close()
    print("close_code", alice.close_code, bob1.close_code)


asyncio.run(main(int(sys.argv[1])))
