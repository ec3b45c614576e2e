"""Regenerate the Python code of the public contract: `python protos/generate.py` (from the repo root).

Writes protos/gen/python/smooth/core/v1/*_pb2.py, *_pb2.pyi and *_pb2_grpc.py, importable as
`smooth.core.v1`. `--out DIR` writes elsewhere (the freshness test compares such a copy with the committed one).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = Path("smooth/core/v1")
DEFAULT_OUT = PROTO_ROOT / "gen" / "python"


def generate(out: Path) -> list[Path]:
    """Run protoc (grpcio-tools) over every proto of the package into `out`; return the files written."""
    from grpc_tools import protoc

    # protos/ is self-contained (issue 14): besides itself, protoc sees only protobuf's well-known types.
    # protos/google/type/date.proto is vendored; its Python code is googleapis-common-protos' google.type.date_pb2,
    # so only our own package is generated here.
    well_known = resources.files("grpc_tools") / "_proto"
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *sources,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed; see the messages above")
        target = out / PACKAGE_DIR
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(Path(tmp) / PACKAGE_DIR, target)
    for part in (out / "smooth", out / "smooth/core", target):
        init = part / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated code of the Smooth Core contract (protos/). Do not edit."""\n')
    return sorted(target.iterdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = parser.parse_args(argv)
    files = generate(ns.out)
    print(f"generated {len(files)} files in {ns.out / PACKAGE_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
