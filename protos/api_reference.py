"""Write the API reference from the contract: `python protos/api_reference.py` (from the repo root).

Compiles protos/ with protoc (grpcio-tools, only protos/ and the well-known types, as generate.py) into a
descriptor set with source info, and renders every service, method, message, field and enum of the package with
the comments written above them in the .proto files, to docs/api.md. `--out FILE` writes elsewhere (the freshness
test compares such a copy with the committed one).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from generate import PACKAGE_DIR, PROTO_ROOT  # protos/generate.py, beside this script
from google.protobuf import descriptor_pb2

PACKAGE = "smooth.core.v1"
DEFAULT_OUT = PROTO_ROOT.parent / "docs" / "api.md"

# Field numbers in descriptor.proto: the paths of source_code_info's locations are made of them.
FILE_SYNTAX, FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 12, 4, 5, 6
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM = 2, 3, 4
ENUM_VALUE, SERVICE_METHOD = 2, 2

FDP = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}


def compile_contract() -> descriptor_pb2.FileDescriptorSet:
    """protos/smooth/core/v1/*.proto as a descriptor set with their comments (source_code_info)."""
    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "contract.binpb"
        args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", "--include_source_info"]
        if protoc.main([*args, f"--descriptor_set_out={out}", *sources]) != 0:
            raise SystemExit("protoc failed; see the messages above")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


class _Comments:
    """The comments of one .proto file, by the path of the element they stand above (or beside)."""

    def __init__(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        self._by_path: dict[tuple[int, ...], str] = {}
        for loc in proto.source_code_info.location:
            text = "\n".join(part.strip() for part in (loc.leading_comments, loc.trailing_comments) if part.strip())
            if text:
                self._by_path[tuple(loc.path)] = "\n".join(line.strip() for line in text.splitlines())

    def block(self, path: tuple[int, ...]) -> str:
        """The comment as paragraphs of Markdown."""
        return _escape(self._by_path.get(path, ""))

    def cell(self, path: tuple[int, ...]) -> str:
        """The comment on one line, for a table cell."""
        return _escape(" ".join(self._by_path.get(path, "").split())).replace("|", "\\|")


def _escape(text: str) -> str:
    """Comments are plain text: `<key_id>` outside a code span would be taken for an HTML tag and vanish."""
    parts = text.split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(parts))


def _anchor(full_name: str) -> str:
    return full_name.lstrip(".").replace(".", "-").lower()


def _type_ref(type_name: str) -> str:
    name = type_name.lstrip(".")
    if name.startswith(PACKAGE + "."):
        short = name[len(PACKAGE) + 1 :]
        return f"[{short}](#{_anchor(name)})"
    return f"`{name}`"


def _field_type(field: descriptor_pb2.FieldDescriptorProto, maps: dict[str, tuple[str, str]]) -> str:
    if field.type_name and field.type_name.lstrip(".") in maps:
        key, value = maps[field.type_name.lstrip(".")]
        return f"map&lt;{key}, {value}&gt;"
    base = _type_ref(field.type_name) if field.type_name else f"`{SCALARS[field.type]}`"
    if field.label == FDP.LABEL_REPEATED:
        return f"repeated {base}"
    if field.proto3_optional:
        return f"optional {base}"
    return base


def _walk_messages(
    messages: list[descriptor_pb2.DescriptorProto], prefix: str, path: tuple[int, ...]
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto, tuple[int, ...]]]:
    """Every message with its full name and source path, nested ones after their parent."""
    for i, message in enumerate(messages):
        full = f"{prefix}.{message.name}"
        here = (*path, i)
        yield full, message, here
        yield from _walk_messages(list(message.nested_type), full, (*here, MESSAGE_NESTED))


def _map_entries(protos: list[descriptor_pb2.FileDescriptorProto]) -> dict[str, tuple[str, str]]:
    """Full name of every map entry message -> the key and value types as they read in the .proto."""
    entries: dict[str, tuple[str, str]] = {}
    for proto in protos:
        for full, message, _ in _walk_messages(list(proto.message_type), proto.package, (FILE_MESSAGE,)):
            if message.options.map_entry:
                key, value = message.field
                entries[full] = (
                    f"`{SCALARS[key.type]}`",
                    _type_ref(value.type_name) if value.type_name else f"`{SCALARS[value.type]}`",
                )
    return entries


def _enum(
    out: list[str],
    comments: _Comments,
    enum: descriptor_pb2.EnumDescriptorProto,
    full: str,
    path: tuple[int, ...],
) -> None:
    out += [f'<a id="{_anchor(full)}"></a>', "", f"#### enum {full[len(PACKAGE) + 1 :]}", ""]
    if comments.block(path):
        out += [comments.block(path), ""]
    out += ["| value | number | description |", "|---|---|---|"]
    for i, value in enumerate(enum.value):
        out.append(f"| `{value.name}` | {value.number} | {comments.cell((*path, ENUM_VALUE, i))} |")
    out.append("")


def render(fds: descriptor_pb2.FileDescriptorSet) -> str:
    protos = sorted((f for f in fds.file if f.package == PACKAGE), key=lambda f: f.name)
    maps = _map_entries(protos)
    out = [
        f"# API reference: `{PACKAGE}`",
        "",
        "<!-- Generated from protos/ by `python protos/api_reference.py`. Do not edit: change the comments in the",
        "     .proto files and run it again (tests/test_api_reference_fresh.py fails while this file is stale). -->",
        "",
        "Every service, method, message and enum of the contract, with the comments of the `.proto` files. The",
        "conventions every service follows (ids, versions and `ABORTED`, field masks, paging, filters, errors,",
        'API keys and scopes) are in the README, section "The API".',
        "",
        "## Services",
        "",
        "| service | file | description |",
        "|---|---|---|",
    ]
    for proto in protos:
        comments = _Comments(proto)
        for i, service in enumerate(proto.service):
            first = comments.cell((FILE_SERVICE, i)).split(". ")[0].rstrip(".")
            out.append(f"| [{service.name}](#{_anchor(f'{PACKAGE}.{service.name}')}) | `{proto.name}` | {first} |")
    out.append("")
    for proto in protos:
        comments = _Comments(proto)
        out += [f"## `{proto.name}`", ""]
        if comments.block((FILE_SYNTAX,)):
            out += [comments.block((FILE_SYNTAX,)), ""]
        for i, service in enumerate(proto.service):
            full = f"{PACKAGE}.{service.name}"
            out += [f'<a id="{_anchor(full)}"></a>', "", f"### service {service.name}", ""]
            if comments.block((FILE_SERVICE, i)):
                out += [comments.block((FILE_SERVICE, i)), ""]
            out += ["| method | request | response | description |", "|---|---|---|---|"]
            for j, method in enumerate(service.method):
                request = ("stream " if method.client_streaming else "") + _type_ref(method.input_type)
                response = ("stream " if method.server_streaming else "") + _type_ref(method.output_type)
                cell = comments.cell((FILE_SERVICE, i, SERVICE_METHOD, j))
                out.append(f"| `{method.name}` | {request} | {response} | {cell} |")
            out.append("")
        for i, enum in enumerate(proto.enum_type):
            _enum(out, comments, enum, f"{PACKAGE}.{enum.name}", (FILE_ENUM, i))
        for full, message, path in _walk_messages(list(proto.message_type), PACKAGE, (FILE_MESSAGE,)):
            if message.options.map_entry:
                continue  # shown as map<K, V> on its field
            out += [f'<a id="{_anchor(full)}"></a>', "", f"#### {full[len(PACKAGE) + 1 :]}", ""]
            if comments.block(path):
                out += [comments.block(path), ""]
            if message.field:
                out += ["| field | number | type | description |", "|---|---|---|---|"]
                for j, field in enumerate(message.field):
                    cell = comments.cell((*path, MESSAGE_FIELD, j))
                    real_oneof = field.HasField("oneof_index") and not field.proto3_optional
                    if real_oneof:
                        cell = f"(one of `{message.oneof_decl[field.oneof_index].name}`) {cell}".rstrip()
                    out.append(f"| `{field.name}` | {field.number} | {_field_type(field, maps)} | {cell} |")
            else:
                out.append("(no fields)")
            out.append("")
            for j, enum in enumerate(message.enum_type):
                _enum(out, comments, enum, f"{full}.{enum.name}", (*path, MESSAGE_ENUM, j))
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the Markdown file (default docs/api.md)")
    ns = parser.parse_args(argv)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(render(compile_contract()))
    print(f"wrote {ns.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
