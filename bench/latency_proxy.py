"""A TCP proxy on loopback that adds a fixed delay to every chunk it forwards,
in each direction: a request and its answer then take at least two delays, as
on a network with that round trip. For benchmarks only (the kernel's netem is
not available here).

Usage: python latency_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS
"""

import asyncio
import sys

listen_port, target_port, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000


async def pipe(reader, writer):
    # Chunks keep their order: each waits the delay after it arrives (a
    # queue of timestamps, so a burst is not delayed once per chunk in turn).
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def forward():
        while True:
            at, data = await queue.get()
            wait = at + delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    task = asyncio.create_task(forward())
    try:
        while True:
            data = await reader.read(65536)
            await queue.put((loop.time(), data))
            if not data:
                break
        await task
    except (ConnectionError, asyncio.CancelledError):
        task.cancel()


async def handle(client_reader, client_writer):
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        pipe(client_reader, server_writer), pipe(server_reader, client_writer), return_exceptions=True
    )


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
