"""Small real files of the formats researchers upload."""

import json
import pickle
import struct


def safetensors_bytes(values: int = 4) -> bytes:
    header = json.dumps(
        {"weight": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack(f"<{values}f", *range(values))


def pickle_bytes() -> bytes:
    return pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)


def pdf_bytes() -> bytes:
    import io

    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
