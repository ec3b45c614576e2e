"""deploy/compose.yaml, seed: write the demo's sample shop to central through its gRPC API, once (a store that
already has tool items is left alone). Its presets give the simulator's T1-T3 on MILL-01 and MILL-02 a tool
instance, so the edge's collector records usages, which replicate to central."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from agent.demo import seed
from agent.grpc_client import authorized_channel


async def main(target: str, key: str) -> None:
    async with authorized_channel(target, key) as channel:
        counts = await seed(channel)
    print(f"seeded {target}: {counts}" if counts else f"{target} already has a catalog: left as it is")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="central:50052", help="central's gRPC address")
    parser.add_argument("--key-file", type=Path, required=True, help="a file holding an admin API key")
    args = parser.parse_args()
    asyncio.run(main(args.target, args.key_file.read_text().strip()))
