"""Recognise the format of an uploaded artifact from its bytes on disk, without loading it.

Uploads can be many gigabytes, so every check reads a header, seeks, or reads a bounded amount;
nothing here reads a whole file. The module is free of Django so that it can run anywhere.
"""

import codecs
import enum
import io
import json
import math
import os
import re
import struct
import zipfile
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple, TypeGuard

import pypdf


class Format(enum.StrEnum):
    SAFETENSORS = "safetensors"
    ONNX = "onnx"
    GGUF = "gguf"
    PICKLE = "pickle"
    PDF = "pdf"
    NPZ = "npz"
    PARQUET = "parquet"
    CSV = "csv"
    JSONL = "jsonl"
    JSON = "json"
    TEXT = "text"
    OTHER = "other"


@dataclass(frozen=True)
class FormatReport:
    format: Format
    unsafe: bool  # pickle-based: loading it runs code, so it is never used for evaluation
    info: dict[str, object]  # small JSON-serialisable facts read from the header


class InvalidArtifact(ValueError):
    """The file claims a format (by extension or magic bytes) but its header is corrupt or
    truncated; the message says what is wrong in words a researcher understands, e.g.
    'model.safetensors: header length 9000 exceeds the file size (120 bytes)'."""


class _Corrupt(Exception):
    """A problem found by a parser; inspect_artifact prefixes the file name."""


PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".joblib"})
TEXT_SUFFIXES: dict[str, Format] = {
    ".csv": Format.CSV,
    ".tsv": Format.CSV,
    ".jsonl": Format.JSONL,
    ".json": Format.JSON,
    ".txt": Format.TEXT,
    ".md": Format.TEXT,
}
# Suffixes of formats that have magic bytes: reaching the suffix rules means the magic was missing.
_MISSING_MAGIC: dict[str, str] = {
    ".gguf": "is not a GGUF file: it does not start with the GGUF signature",
    ".pdf": "is not a PDF: it does not start with '%PDF-'",
    ".parquet": "is not a Parquet file: it does not start with the PAR1 signature",
    ".npz": "is not an .npz file: it is not a zip archive",
}

_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
_SAFETENSORS_MAX_DIMS = 64  # numpy's limit; also keeps a hostile shape from costing minutes
_SAFETENSORS_MAX_REPORTED_METADATA = 4096
_SAFETENSORS_DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

_PROTOBUF_VARINT, _PROTOBUF_I64, _PROTOBUF_LEN, _PROTOBUF_I32 = 0, 1, 2, 5
_PROTOBUF_WIRE_TYPES = frozenset({_PROTOBUF_VARINT, _PROTOBUF_I64, _PROTOBUF_LEN, _PROTOBUF_I32})
_ONNX_MODEL_FIELDS: dict[int, tuple[str, int]] = {
    1: ("ir_version", _PROTOBUF_VARINT),
    2: ("producer_name", _PROTOBUF_LEN),
    3: ("producer_version", _PROTOBUF_LEN),
    4: ("domain", _PROTOBUF_LEN),
    5: ("model_version", _PROTOBUF_VARINT),
    6: ("doc_string", _PROTOBUF_LEN),
    7: ("graph", _PROTOBUF_LEN),
    8: ("opset_import", _PROTOBUF_LEN),
    14: ("metadata_props", _PROTOBUF_LEN),
    20: ("training_info", _PROTOBUF_LEN),
    25: ("functions", _PROTOBUF_LEN),
    26: ("configuration", _PROTOBUF_LEN),
}
_ONNX_MAX_OPSET_ENTRY = 64 * 1024
_ONNX_MAX_REPORTED_TEXT = 256

_GGUF_STRING, _GGUF_ARRAY, _GGUF_BOOL = 8, 9, 7
_GGUF_SCALARS: dict[int, str] = {  # value type -> struct format
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "B",
    10: "Q",
    11: "q",
    12: "d",
}
_GGUF_MAX_ENTRIES = 1_000_000
_GGUF_MAX_KEY = 65535  # the spec's limit on key length; tensor names are far shorter
_GGUF_MAX_DIMS = 16  # ggml uses 4; the cap only bounds what a corrupt file can make us read
_GGUF_MAX_ARRAY_NESTING = 8
_GGUF_MAX_REPORTED_TEXT = 1024
_GGUF_DEFAULT_ALIGNMENT = 32
_GGUF_REPORTED_KEYS = frozenset({"general.architecture", "general.name", "general.alignment"})
# ggml tensor type -> (elements per block, bytes per block), as in gguf-py's GGML_QUANT_SIZES.
_GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 40),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
    40: (64, 36),
    41: (128, 18),
}

_PDF_TAIL = 2048
_TEXT_SAMPLE = 64 * 1024


class _Stream:
    """The open upload, read through bounds checks: nothing is read past the end of the file."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file = file
        self.size = size
        self.pos = 0

    @property
    def remaining(self) -> int:
        return self.size - self.pos

    def seek(self, pos: int) -> None:
        self.file.seek(pos)
        self.pos = pos

    def head(self, n: int) -> bytes:
        self.seek(0)
        data = self.file.read(n)
        self.seek(0)
        return data

    def read(self, n: int, what: str) -> bytes:
        self._require(n, what)
        data = self.file.read(n)
        if len(data) != n:
            raise _Corrupt(f"the file ends inside the {what}; was the upload cut short?")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        self._require(n, what)
        self.file.seek(n, os.SEEK_CUR)
        self.pos += n

    def uint(self, width: int, what: str) -> int:
        return int.from_bytes(self.read(width, what), "little")

    def varint(self, what: str) -> int:
        start = self.pos
        value = 0
        for shift in range(0, 70, 7):
            byte = self.read(1, what)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
        raise _Corrupt(f"is not a valid ONNX model (malformed {what} at byte {start})")

    def _require(self, n: int, what: str) -> None:
        if n > self.remaining:
            raise _Corrupt(
                f"the file ends inside the {what} ({n} bytes needed at byte {self.pos}, "
                f"the file has {self.size}); was the upload cut short?"
            )


def inspect_artifact(path: str | os.PathLike[str], filename: str) -> FormatReport:
    """Say what format the file at `path` is in; `filename` is the name it was uploaded under."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    suffix = os.path.splitext(name)[1].lower()
    with open(path, "rb") as file:
        stream = _Stream(file, os.fstat(file.fileno()).st_size)
        try:
            return _inspect(stream, suffix)
        except _Corrupt as exc:
            raise InvalidArtifact(f"{name}: {exc}") from exc


def _inspect(stream: _Stream, suffix: str) -> FormatReport:
    head = stream.head(16)
    if head.startswith(b"GGUF"):
        return _inspect_gguf(stream)
    if head.startswith(b"%PDF-"):
        return _inspect_pdf(stream)
    if head.startswith(b"PAR1"):
        return _inspect_parquet(stream)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        # A plain zip is none of our formats; then the suffix decides, as for a file with no magic.
        report = _inspect_zip(stream, suffix)
        if report is not None:
            return report
    if _looks_like_safetensors(head, stream.size):
        return _inspect_safetensors(stream)
    if _looks_like_pickle(head):
        info = {"container": "pickle", "protocol": head[1]}
        return FormatReport(Format.PICKLE, unsafe=True, info=info)
    return _inspect_by_suffix(stream, suffix)


def _inspect_by_suffix(stream: _Stream, suffix: str) -> FormatReport:
    if suffix == ".safetensors":
        return _inspect_safetensors(stream)
    if suffix == ".onnx":
        return _inspect_onnx(stream)
    if suffix in _MISSING_MAGIC:
        raise _Corrupt(_MISSING_MAGIC[suffix])
    if suffix in PICKLE_SUFFIXES:
        return FormatReport(Format.PICKLE, unsafe=True, info={})
    if suffix in TEXT_SUFFIXES:
        return _inspect_text(stream, TEXT_SUFFIXES[suffix])
    return FormatReport(Format.OTHER, unsafe=False, info={})


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    # safetensors has no magic; a plausible little-endian header length followed by '{' is
    # specific enough, and catches safetensors uploaded under another name such as .bin.
    if len(head) < 9 or head[8:9] != b"{":
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 2 <= header_len <= min(_SAFETENSORS_MAX_HEADER, size - 8)


def _looks_like_pickle(head: bytes) -> bool:
    # PROTO opcode, protocol 2 to 5, then an opcode: all opcodes are >= 0x20, which keeps a
    # safetensors header length such as 0x0280 (bytes 80 02 00) from passing for a pickle.
    return len(head) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5 and head[2] >= 0x20


class _SafetensorsTensor(NamedTuple):
    name: str
    dtype: str
    elements: int
    begin: int
    end: int


def _inspect_safetensors(stream: _Stream) -> FormatReport:
    if stream.size < 8:
        raise _Corrupt(
            f"is too short to be a safetensors file ({stream.size} bytes; "
            "the header length alone takes 8)"
        )
    header_len = stream.uint(8, "header length")
    if header_len > _SAFETENSORS_MAX_HEADER:
        raise _Corrupt(
            f"header length {header_len} exceeds the 100 MiB limit "
            "(is this really a safetensors file?)"
        )
    if header_len > stream.size - 8:
        raise _Corrupt(f"header length {header_len} exceeds the file size ({stream.size} bytes)")
    raw = stream.read(header_len, "header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Corrupt("header is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise _Corrupt(f"header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _Corrupt("header is not a JSON object")

    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(value, str) for value in metadata.values())
    ):
        raise _Corrupt("__metadata__ must map names to text values")
    tensors = sorted(
        (_safetensors_tensor(name, entry) for name, entry in header.items()),
        key=lambda tensor: (tensor.begin, tensor.end),
    )

    covered = 0
    for tensor in tensors:
        if tensor.begin != covered:
            raise _Corrupt(
                f"tensor {tensor.name!r} starts at byte {tensor.begin} of the data buffer "
                f"where byte {covered} was expected (tensors overlap or leave a gap)"
            )
        covered = tensor.end
    buffer_len = stream.size - 8 - header_len
    if covered > buffer_len:
        raise _Corrupt(
            f"tensors need {covered} bytes of data but the file holds only {buffer_len} after "
            "the header; was the upload cut short?"
        )
    if covered < buffer_len:
        raise _Corrupt(
            f"tensors cover {covered} bytes but the file holds {buffer_len} bytes of data "
            "after the header (unexpected trailing bytes)"
        )

    info: dict[str, object] = {
        "tensor_count": len(tensors),
        "dtypes": sorted({tensor.dtype for tensor in tensors}),
        "parameter_count": sum(tensor.elements for tensor in tensors),
    }
    if metadata is not None and len(json.dumps(metadata)) <= _SAFETENSORS_MAX_REPORTED_METADATA:
        info["metadata"] = {_storable(key): _storable(value) for key, value in metadata.items()}
    return FormatReport(Format.SAFETENSORS, unsafe=False, info=info)


def _safetensors_tensor(name: str, entry: object) -> _SafetensorsTensor:
    if not isinstance(entry, dict):
        raise _Corrupt(f"tensor {name!r} is not described by a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _SAFETENSORS_DTYPE_BITS:
        raise _Corrupt(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not _is_list_of_naturals(shape):
        raise _Corrupt(f"tensor {name!r} has shape {shape!r}; expected a list of whole numbers")
    if len(shape) > _SAFETENSORS_MAX_DIMS:
        raise _Corrupt(
            f"tensor {name!r} has {len(shape)} dimensions "
            f"(at most {_SAFETENSORS_MAX_DIMS} are supported)"
        )
    if not _is_list_of_naturals(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
        raise _Corrupt(
            f"tensor {name!r} has data_offsets {offsets!r}; expected [begin, end] with begin <= end"
        )
    elements = math.prod(shape)
    bits = elements * _SAFETENSORS_DTYPE_BITS[dtype]
    begin, end = offsets
    if bits % 8 or bits // 8 != end - begin:
        raise _Corrupt(
            f"tensor {name!r} of shape {shape} and dtype {dtype} needs {bits / 8:g} bytes "
            f"but its data_offsets span {end - begin}"
        )
    return _SafetensorsTensor(name, dtype, elements, begin, end)


def _is_list_of_naturals(value: object) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
    )


def _inspect_onnx(stream: _Stream) -> FormatReport:
    """Walk the top-level ModelProto fields, seeking past every payload but small ones."""
    ir_version: int | None = None
    has_graph = False
    opsets: dict[str, int] = {}
    info: dict[str, object] = {}
    while stream.remaining:
        at = stream.pos
        tag = stream.varint("protobuf field tag")
        number, wire_type = tag >> 3, tag & 7
        if number == 0 or wire_type not in _PROTOBUF_WIRE_TYPES:
            raise _Corrupt(f"is not a valid ONNX model (unreadable protobuf data at byte {at})")
        known = _ONNX_MODEL_FIELDS.get(number)
        if known is not None and wire_type != known[1]:
            raise _Corrupt(
                f"is not a valid ONNX model ({known[0]} at byte {at} has the wrong encoding)"
            )
        what = known[0] if known is not None else f"protobuf field {number}"
        if wire_type == _PROTOBUF_VARINT:
            value = stream.varint(what)
            if number == 1:
                ir_version = value
        elif wire_type == _PROTOBUF_I64:
            stream.skip(8, what)
        elif wire_type == _PROTOBUF_I32:
            stream.skip(4, what)
        else:
            length = stream.varint(f"length of the {what}")
            if length > stream.remaining:
                raise _Corrupt(
                    f"the {what} at byte {at} claims {length} bytes but only "
                    f"{stream.remaining} remain; was the upload cut short?"
                )
            if number == 8:
                domain, version = _onnx_opset(stream, length)
                opsets[domain] = version
            elif number in (2, 3):
                text = _read_short_text(stream, length, _ONNX_MAX_REPORTED_TEXT, what)
                info[what] = _storable(text)
            else:
                has_graph = has_graph or number == 7
                stream.skip(length, what)

    if ir_version is None:
        raise _Corrupt("is not a valid ONNX model (it has no ir_version)")
    if ir_version < 1:
        raise _Corrupt(f"is not a valid ONNX model (ir_version {ir_version} is not valid)")
    if not has_graph:
        raise _Corrupt("is not a valid ONNX model (it has no graph)")
    # Required since IR version 3; its absence usually means the end of the file is missing.
    if ir_version >= 3 and not opsets:
        raise _Corrupt("is not a valid ONNX model (it declares no opset_import)")
    return FormatReport(
        Format.ONNX, unsafe=False, info={"ir_version": ir_version, "opsets": opsets, **info}
    )


def _onnx_opset(stream: _Stream, length: int) -> tuple[str, int]:
    """Parse one OperatorSetIdProto: domain = 1 (text), version = 2 (varint)."""
    if length > _ONNX_MAX_OPSET_ENTRY:
        raise _Corrupt(f"an opset_import entry is implausibly large ({length} bytes)")
    entry = _Stream(io.BytesIO(stream.read(length, "opset_import entry")), length)
    domain, version = "", 0
    while entry.remaining:
        tag = entry.varint("opset_import entry")
        number, wire_type = tag >> 3, tag & 7
        if number == 1 and wire_type == _PROTOBUF_LEN:
            size = entry.varint("opset_import domain")
            domain = entry.read(size, "opset_import domain").decode("utf-8", errors="replace")
        elif number == 2 and wire_type == _PROTOBUF_VARINT:
            version = entry.varint("opset_import version")
        elif wire_type == _PROTOBUF_VARINT:
            entry.varint("opset_import entry")
        elif wire_type == _PROTOBUF_LEN:
            entry.skip(entry.varint("opset_import entry"), "opset_import entry")
        elif wire_type in (_PROTOBUF_I64, _PROTOBUF_I32):
            entry.skip(8 if wire_type == _PROTOBUF_I64 else 4, "opset_import entry")
        else:
            raise _Corrupt("is not a valid ONNX model (an opset_import entry is unreadable)")
    # The empty domain is the default operator set, which ONNX calls ai.onnx.
    return _storable(domain) or "ai.onnx", version


def _read_short_text(stream: _Stream, length: int, limit: int, what: str) -> str:
    text = stream.read(min(length, limit), what).decode("utf-8", errors="replace")
    stream.skip(length - min(length, limit), what)
    return text


def _storable(text: object) -> str:
    """Text from the file as the catalogue can store it: PostgreSQL's jsonb refuses NUL
    characters, and lone surrogates (valid JSON escapes) cannot be encoded as UTF-8."""
    return str(text).encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "")


def _inspect_gguf(stream: _Stream) -> FormatReport:
    stream.skip(4, "GGUF signature")
    version = stream.uint(4, "GGUF version")
    if not 1 <= version <= 3:
        if 1 <= int.from_bytes(version.to_bytes(4, "little"), "big") <= 3:
            raise _Corrupt("is a big-endian GGUF file; only little-endian GGUF is supported")
        raise _Corrupt(f"GGUF version {version} is not supported (versions 1 to 3 are)")
    width = 4 if version == 1 else 8  # version 1 stored counts and lengths in 32 bits
    tensor_count = stream.uint(width, "tensor count")
    kv_count = stream.uint(width, "metadata count")
    _check_gguf_count(stream, tensor_count, width + 16, "tensors")
    _check_gguf_count(stream, kv_count, width + 5, "metadata entries")

    reported: dict[str, object] = {}
    for index in range(kv_count):
        key = _gguf_text(stream, width, f"key of metadata entry {index}")
        value_type = stream.uint(4, f"type of metadata {key!r}")
        value = _gguf_value(stream, width, value_type, f"metadata {key!r}")
        if key in _GGUF_REPORTED_KEYS:
            reported[key] = value

    alignment = reported.get("general.alignment", _GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise _Corrupt(f"general.alignment {alignment!r} is not a power of two")
    parameter_count = _gguf_tensors(stream, width, tensor_count, alignment)

    info: dict[str, object] = {
        "version": version,
        "tensor_count": tensor_count,
        "kv_count": kv_count,
        "parameter_count": parameter_count,
    }
    for key in ("general.architecture", "general.name"):
        if isinstance(reported.get(key), str):
            info[key.removeprefix("general.")] = _storable(reported[key])
    return FormatReport(Format.GGUF, unsafe=False, info=info)


def _check_gguf_count(stream: _Stream, count: int, min_entry_size: int, what: str) -> None:
    if count > _GGUF_MAX_ENTRIES or count * min_entry_size > stream.remaining:
        raise _Corrupt(f"declares {count} {what}, more than a file of {stream.size} bytes can hold")


def _gguf_text(stream: _Stream, width: int, what: str) -> str:
    length = stream.uint(width, f"length of the {what}")
    if length > _GGUF_MAX_KEY:
        raise _Corrupt(f"the {what} is {length} bytes long (the limit is {_GGUF_MAX_KEY})")
    try:
        return stream.read(length, what).decode("utf-8")
    except UnicodeDecodeError:
        raise _Corrupt(f"the {what} is not valid UTF-8") from None


def _gguf_value(stream: _Stream, width: int, value_type: int, what: str, depth: int = 0) -> object:
    """Read one metadata value: scalars and short strings are returned, the rest is skipped."""
    if value_type in _GGUF_SCALARS:
        fmt = "<" + _GGUF_SCALARS[value_type]
        (value,) = struct.unpack(fmt, stream.read(struct.calcsize(fmt), what))
        if value_type == _GGUF_BOOL and value > 1:
            raise _Corrupt(f"{what} is a boolean holding {value}")
        return value
    if value_type == _GGUF_STRING:
        length = stream.uint(width, f"length of {what}")
        if length > _GGUF_MAX_REPORTED_TEXT:
            stream.skip(length, what)
            return None
        return stream.read(length, what).decode("utf-8", errors="replace")
    if value_type != _GGUF_ARRAY:
        raise _Corrupt(f"{what} has unknown value type {value_type}")

    if depth >= _GGUF_MAX_ARRAY_NESTING:
        raise _Corrupt(f"{what} nests arrays more than {_GGUF_MAX_ARRAY_NESTING} deep")
    item_type = stream.uint(4, f"item type of {what}")
    count = stream.uint(width, f"length of {what}")
    if item_type in _GGUF_SCALARS:
        stream.skip(count * struct.calcsize(_GGUF_SCALARS[item_type]), what)
    elif item_type == _GGUF_STRING:
        _check_gguf_count(stream, count, width, f"items in {what}")
        for _ in range(count):
            stream.skip(stream.uint(width, what), what)
    elif item_type == _GGUF_ARRAY:
        _check_gguf_count(stream, count, 4 + width, f"items in {what}")
        for _ in range(count):
            _gguf_value(stream, width, _GGUF_ARRAY, what, depth + 1)
    else:
        raise _Corrupt(f"{what} is an array of unknown value type {item_type}")
    return None


def _gguf_tensors(stream: _Stream, width: int, count: int, alignment: int) -> int:
    """Check every tensor's data lies inside the file; return the number of parameters."""
    extents: list[tuple[str, int, int]] = []  # name, offset in the data section, byte size
    parameter_count = 0
    for index in range(count):
        name = _gguf_text(stream, width, f"name of tensor {index}")
        n_dims = stream.uint(4, f"dimension count of tensor {name!r}")
        if n_dims > _GGUF_MAX_DIMS:
            raise _Corrupt(f"tensor {name!r} claims {n_dims} dimensions")
        dims = [stream.uint(width, f"shape of tensor {name!r}") for _ in range(n_dims)]
        ggml_type = stream.uint(4, f"type of tensor {name!r}")
        offset = stream.uint(8, f"offset of tensor {name!r}")
        if offset % alignment:
            raise _Corrupt(f"tensor {name!r} is not aligned to {alignment} bytes")
        elements = math.prod(dims)
        parameter_count += elements
        # A ggml type newer than this table cannot be sized; its offset is still checked.
        block_size, block_bytes = _GGML_BLOCKS.get(ggml_type, (1, 0))
        if dims and dims[0] % block_size:
            raise _Corrupt(
                f"tensor {name!r} has rows of {dims[0]} values, not a multiple of the "
                f"{block_size}-value blocks of its type"
            )
        extents.append((name, offset, elements // block_size * block_bytes))

    data_start = -(-stream.pos // alignment) * alignment
    for name, offset, size in extents:
        end = data_start + offset + size
        if end > stream.size:
            raise _Corrupt(
                f"tensor {name!r} ends at byte {end} but the file has only {stream.size}; "
                "was the upload cut short?"
            )
    return parameter_count


def _inspect_pdf(stream: _Stream) -> FormatReport:
    header = re.match(rb"%PDF-([12]\.\d)", stream.head(16))
    if header is None:
        raise _Corrupt("does not start with a PDF 1.x or 2.x header")
    tail_start = max(0, stream.size - _PDF_TAIL)
    stream.seek(tail_start)
    if b"%%EOF" not in stream.read(stream.size - tail_start, "end of the PDF"):
        raise _Corrupt("has no %%EOF marker at its end; the file looks truncated")
    stream.seek(0)
    try:
        reader = pypdf.PdfReader(stream.file)
        page_count = len(reader.pages)
    except OSError:
        raise
    except Exception as exc:  # pypdf raises many exception types on malformed input
        raise _Corrupt(f"could not be read as a PDF ({exc})") from exc
    return FormatReport(
        Format.PDF,
        unsafe=False,
        info={
            "version": header.group(1).decode("ascii"),
            "page_count": page_count,
            "encrypted": reader.is_encrypted,
        },
    )


def _inspect_parquet(stream: _Stream) -> FormatReport:
    if stream.size < 12:
        raise _Corrupt(f"is too short to be a Parquet file ({stream.size} bytes)")
    stream.seek(stream.size - 8)
    footer_len = stream.uint(4, "Parquet footer length")
    if stream.read(4, "Parquet footer") != b"PAR1":
        raise _Corrupt("does not end with the PAR1 signature; the file looks truncated")
    if footer_len > stream.size - 12:
        raise _Corrupt(
            f"Parquet footer length {footer_len} exceeds the file size ({stream.size} bytes)"
        )
    return FormatReport(Format.PARQUET, unsafe=False, info={})


def _inspect_zip(stream: _Stream, suffix: str) -> FormatReport | None:
    """A PyTorch zip (pickle inside) or an .npz; None for any other zip archive."""
    try:
        with zipfile.ZipFile(stream.file) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError):
        if suffix == ".npz":
            raise _Corrupt("is not an .npz file: its zip archive is unreadable") from None
        return None
    finally:
        stream.seek(0)

    if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        return FormatReport(Format.PICKLE, unsafe=True, info={"container": "torch-zip"})
    strangers = [name for name in names if not name.endswith(".npy")]
    if suffix == ".npz" and strangers:
        raise _Corrupt(f"is not an .npz file: {strangers[:3]} are not .npy arrays")
    if strangers or not (names or suffix == ".npz"):
        return None  # an empty zip is only an .npz when it says so
    arrays = [_storable(name.removesuffix(".npy")) for name in names]
    return FormatReport(Format.NPZ, unsafe=False, info={"arrays": arrays})


def _inspect_text(stream: _Stream, text_format: Format) -> FormatReport:
    sample = stream.read(min(_TEXT_SAMPLE, stream.size), "text")
    # Not final unless the whole file was read: the sample may end inside a multi-byte character.
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=stream.remaining == 0)
    except UnicodeDecodeError as exc:
        raise _Corrupt(
            f"is not UTF-8 text (byte 0x{sample[exc.start]:02x} at offset {exc.start} is "
            "invalid); save it as UTF-8 and upload it again"
        ) from None
    return FormatReport(text_format, unsafe=False, info={})
