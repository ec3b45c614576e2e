"""The MES client in examples/ (issue 13) against a real server: it lists the tools due for calibration, follows
the change stream, and after its own restart resumes from its saved cursor: nothing missed, nothing twice."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from conftest import start_edge
from google.type import date_pb2

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mes_client.py"


async def run_client(address: str, key: str, cursor: Path, changes: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "--target", address, "--key", key, "--cursor-file", str(cursor),
        "--due-before", "2027-01-01", "--max-changes", str(changes),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def wait_for_line(process: asyncio.subprocess.Process, pattern: str) -> list[str]:
    assert process.stdout is not None
    lines = []
    async with asyncio.timeout(30):
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, f"the client ended before printing {pattern!r}: {lines}"
            lines.append(line.rstrip())
            if re.search(pattern, line):
                return lines


async def finish(process: asyncio.subprocess.Process) -> list[str]:
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().splitlines()


def sequences(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.match(r"#(\d+) \w+ ", line))]


async def test_lists_due_tools_follows_and_resumes_after_a_restart(tmp_path: Path) -> None:
    async for edge in start_edge(str(tmp_path / "edge.db")):
        due = await edge.make.instance(calibration_due=date_pb2.Date(year=2026, month=6, day=30))
        cursor = tmp_path / "mes.cursor"
        tool = await edge.make.instance()

        client = await run_client(edge.address, edge.admin_secret, cursor, changes=2)
        listed = await wait_for_line(client, r"watching from now")
        assert any(due.serial_number in line and "due 2026-06-30" in line for line in listed)
        await asyncio.sleep(0.5)  # the stream is open: what follows is seen live
        await edge.make.usage(tool_instance_id=tool.id, machine_id="MILL-9")  # and the instance goes IN_USE
        printed = listed + await finish(client)
        seen = sequences(printed)
        assert len(seen) == 2 and any("USAGE_OPENED" in line and "MILL-9" in line for line in printed)
        assert cursor.read_text()

        # Written while the client is not running; the restarted client gets exactly these.
        usage = await edge.make.usage(tool_instance_id=tool.id, machine_id="MILL-9")
        client = await run_client(edge.address, edge.admin_secret, cursor, changes=1)
        again = await finish(client)
        assert "watching from the saved cursor" in "\n".join(again)
        (resumed,) = sequences(again)
        assert resumed > max(seen) and any(usage.id in line for line in again)
