"""protos/ is a contract any language can compile (issue 14): protoc given only protos/ and protobuf's
well-known types compiles every proto in it, so nothing it imports lives only in a Python package."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"


def test_protos_compile_with_only_protos_and_the_well_known_types(tmp_path: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    assert "smooth/core/v1/tool_item.proto" in sources
    well_known = resources.files("grpc_tools") / "_proto"
    # protoc run directly (not `python -m grpc_tools.protoc`, which adds its own include path): these two
    # include paths are all it sees, as a grpc-js or Go developer's protoc would.
    script = "import sys; from grpc_tools import protoc; sys.exit(protoc.main(sys.argv))"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            f"-I{PROTOS}",
            f"-I{well_known}",
            f"--descriptor_set_out={tmp_path / 'contract.binpb'}",
            "--include_imports",
            f"--python_out={tmp_path}",
            *sources,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"protoc failed on protos/:\n{result.stderr}"
    assert (tmp_path / "contract.binpb").stat().st_size > 0
    assert (tmp_path / "smooth" / "core" / "v1" / "tool_instance_pb2.py").exists()
