import contextlib
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import gguf
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from pypdf import PdfWriter

from apps.catalog.formats import (
    _GGML_BLOCKS,
    Format,
    FormatReport,
    InvalidArtifact,
    inspect_artifact,
)


def inspect(path: Path, filename: str | None = None) -> FormatReport:
    report = inspect_artifact(path, filename or path.name)
    json.dumps(report.info)  # the upload service stores info as JSON
    return report


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def safetensors_bytes(
    tensors: dict[str, np.ndarray],
    metadata: dict[str, str] | None = None,
    dtypes: dict[str, str] | None = None,
) -> bytes:
    """A safetensors file built by hand: 8-byte length, JSON header, then the raw tensor bytes."""
    names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    data = b""
    for name, array in tensors.items():
        raw = array.tobytes()
        header[name] = {
            "dtype": (dtypes or {}).get(name, names[array.dtype]),
            "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def safetensors_with_header(header: dict[str, object], data: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def onnx_model_bytes() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny", [x], [y])
    model = helper.make_model(
        graph,
        producer_name="exchange-tests",
        producer_version="1.0",
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        ir_version=9,
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def gguf_file(path: Path, endianess: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE) -> Path:
    writer = gguf.GGUFWriter(path, "llama", endianess=endianess)
    writer.add_name("tiny-llama")
    writer.add_uint32("llama.context_length", 128)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "hello"])
    writer.add_array("tokenizer.ggml.scores", [0.0, 0.5, 1.0])
    writer.add_tensor("token_embd.weight", np.ones((3, 8), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.zeros(8, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def pdf_bytes(pages: int = 1) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=612, height=792)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_safetensors_reports_tensors_dtypes_and_parameters(tmp_path: Path) -> None:
    data = safetensors_bytes(
        {
            "embed.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
            "embed.bias": np.zeros(4, dtype=np.float16),
            "step": np.array([7], dtype=np.int64),
        },
        metadata={"format": "pt"},
    )

    report = inspect(write(tmp_path / "model.safetensors", data))

    assert report.format == Format.SAFETENSORS
    assert report.unsafe is False
    assert report.info == {
        "tensor_count": 3,
        "dtypes": ["F16", "F32", "I64"],
        "parameter_count": 17,
        "metadata": {"format": "pt"},
    }


def test_safetensors_uploaded_as_bin_is_recognised_by_content(tmp_path: Path) -> None:
    data = safetensors_bytes({"w": np.ones((2, 2), dtype=np.float32)})

    report = inspect(write(tmp_path / "pytorch_model.bin", data))

    assert report.format == Format.SAFETENSORS
    assert report.unsafe is False


def test_safetensors_sub_byte_dtype_is_sized_in_bits(tmp_path: Path) -> None:
    header = {"packed": {"dtype": "F4", "shape": [2, 3], "data_offsets": [0, 3]}}

    report = inspect(write(tmp_path / "fp4.safetensors", safetensors_with_header(header, b"abc")))

    assert report.info["dtypes"] == ["F4"]
    assert report.info["parameter_count"] == 6


def test_safetensors_header_longer_than_file_is_refused(tmp_path: Path) -> None:
    data = struct.pack("<Q", 9000) + b"{" + b" " * 111

    with pytest.raises(InvalidArtifact) as excinfo:
        inspect(write(tmp_path / "model.safetensors", data))

    assert str(excinfo.value) == (
        "model.safetensors: header length 9000 exceeds the file size (120 bytes)"
    )


def test_safetensors_header_over_100_mib_is_refused(tmp_path: Path) -> None:
    data = struct.pack("<Q", 200 * 1024 * 1024) + b"{}"

    with pytest.raises(InvalidArtifact, match="exceeds the 100 MiB limit"):
        inspect(write(tmp_path / "model.safetensors", data))


def test_safetensors_file_shorter_than_its_length_field_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifact, match=r"model\.safetensors: is too short .* \(5 bytes"):
        inspect(write(tmp_path / "model.safetensors", b"\x10\x00\x00\x00\x00"))


def test_safetensors_named_text_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "model.safetensors", b"this is a readme, not a model\n")

    with pytest.raises(InvalidArtifact, match="is this really a safetensors file"):
        inspect(path)


def test_safetensors_cut_short_is_refused(tmp_path: Path) -> None:
    data = safetensors_bytes({"w": np.ones((4, 4), dtype=np.float32)})

    with pytest.raises(InvalidArtifact, match="need 64 bytes of data but the file holds only 60"):
        inspect(write(tmp_path / "model.safetensors", data[:-4]))


def test_safetensors_offsets_not_covering_the_buffer_are_refused(tmp_path: Path) -> None:
    data = safetensors_bytes({"w": np.ones(4, dtype=np.float32)}) + b"\x00" * 8

    with pytest.raises(InvalidArtifact, match="cover 16 bytes but the file holds 24"):
        inspect(write(tmp_path / "model.safetensors", data))


def test_safetensors_gap_between_tensors_is_refused(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
        "b": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]},
    }

    with pytest.raises(InvalidArtifact, match=r"'b' starts at byte 8 .* where byte 4 was expected"):
        inspect(write(tmp_path / "m.safetensors", safetensors_with_header(header, bytes(12))))


def test_safetensors_offsets_disagreeing_with_shape_are_refused(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}

    with pytest.raises(InvalidArtifact, match=r"'w' of shape .* F32 needs 16 bytes .* span 12"):
        inspect(write(tmp_path / "m.safetensors", safetensors_with_header(header, bytes(12))))


def test_safetensors_unknown_dtype_is_refused(tmp_path: Path) -> None:
    data = safetensors_bytes({"w": np.ones(2, dtype=np.float32)}, dtypes={"w": "F7"})

    with pytest.raises(InvalidArtifact, match="tensor 'w' has unknown dtype 'F7'"):
        inspect(write(tmp_path / "model.safetensors", data))


def test_safetensors_negative_dimension_is_refused(tmp_path: Path) -> None:
    header = {"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}}

    with pytest.raises(InvalidArtifact, match="shape \\[-1\\]; expected a list of whole numbers"):
        inspect(write(tmp_path / "m.safetensors", safetensors_with_header(header, b"")))


def test_safetensors_non_json_header_is_refused(tmp_path: Path) -> None:
    header = b"{not json at all}"
    data = struct.pack("<Q", len(header)) + header

    with pytest.raises(InvalidArtifact, match="header is not valid JSON"):
        inspect(write(tmp_path / "model.safetensors", data))


def test_safetensors_non_utf8_header_is_refused(tmp_path: Path) -> None:
    header = b'{"\xff": 1}'
    data = struct.pack("<Q", len(header)) + header

    with pytest.raises(InvalidArtifact, match="header is not valid UTF-8"):
        inspect(write(tmp_path / "model.safetensors", data))


def test_safetensors_cut_at_any_byte_is_refused(tmp_path: Path) -> None:
    data = safetensors_bytes({"w": np.ones((2, 3), dtype=np.float32)}, metadata={"a": "b"})
    path = tmp_path / "model.safetensors"

    for length in range(len(data)):
        with pytest.raises(InvalidArtifact):
            inspect(write(path, data[:length]))


def test_onnx_model_reports_ir_version_opsets_and_producer(tmp_path: Path) -> None:
    report = inspect(write(tmp_path / "model.onnx", onnx_model_bytes()))

    assert report.format == Format.ONNX
    assert report.unsafe is False
    assert report.info == {
        "ir_version": 9,
        "opsets": {"ai.onnx": 17, "ai.onnx.ml": 3},
        "producer_name": "exchange-tests",
        "producer_version": "1.0",
    }


def test_onnx_unknown_field_with_valid_wire_type_is_accepted(tmp_path: Path) -> None:
    unknown_varint_field_15 = bytes([15 << 3 | 0, 42])
    data = onnx_model_bytes() + unknown_varint_field_15

    assert inspect(write(tmp_path / "model.onnx", data)).format == Format.ONNX


def test_onnx_cut_in_half_is_refused(tmp_path: Path) -> None:
    data = onnx_model_bytes()

    with pytest.raises(
        InvalidArtifact, match=r"model\.onnx: the graph at byte \d+ claims \d+ bytes .* cut short"
    ):
        inspect(write(tmp_path / "model.onnx", data[: len(data) // 2]))


def test_onnx_missing_its_trailing_opsets_is_refused(tmp_path: Path) -> None:
    model = onnx.load_from_string(onnx_model_bytes())
    del model.opset_import[:]

    with pytest.raises(InvalidArtifact, match="declares no opset_import"):
        inspect(write(tmp_path / "model.onnx", model.SerializeToString()))


def test_onnx_without_graph_is_refused(tmp_path: Path) -> None:
    ir_version_only = bytes([1 << 3 | 0, 9])

    with pytest.raises(InvalidArtifact, match="it has no graph"):
        inspect(write(tmp_path / "model.onnx", ir_version_only))


def test_onnx_known_field_with_wrong_wire_type_is_refused(tmp_path: Path) -> None:
    graph_as_varint = bytes([1 << 3 | 0, 9, 7 << 3 | 0, 1])

    with pytest.raises(InvalidArtifact, match="graph at byte 2 has the wrong encoding"):
        inspect(write(tmp_path / "model.onnx", graph_as_varint))


def test_onnx_garbage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifact, match="is not a valid ONNX model"):
        inspect(write(tmp_path / "model.onnx", b"\xff" * 64))


def test_onnx_named_text_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "model.onnx", b"hello, this is not a model\n")

    with pytest.raises(InvalidArtifact, match=r"model\.onnx: is not a valid ONNX model"):
        inspect(path)


def test_onnx_bytes_under_another_name_are_other(tmp_path: Path) -> None:
    # ONNX has no magic bytes: only the .onnx name makes us read it as a model.
    report = inspect(write(tmp_path / "model.dat", onnx_model_bytes()))

    assert report.format == Format.OTHER


def test_gguf_reports_version_counts_and_architecture(tmp_path: Path) -> None:
    report = inspect(gguf_file(tmp_path / "tiny.gguf"))

    assert report.format == Format.GGUF
    assert report.unsafe is False
    assert report.info == {
        "version": 3,
        "tensor_count": 2,
        "kv_count": 5,
        "parameter_count": 32,
        "architecture": "llama",
        "name": "tiny-llama",
    }


def test_gguf_named_bin_is_gguf_not_pickle(tmp_path: Path) -> None:
    report = inspect(gguf_file(tmp_path / "ggml-model.bin"))

    assert report.format == Format.GGUF
    assert report.unsafe is False


def test_gguf_cut_inside_tensor_data_is_refused(tmp_path: Path) -> None:
    path = gguf_file(tmp_path / "tiny.gguf")
    path.write_bytes(path.read_bytes()[:-64])

    with pytest.raises(
        InvalidArtifact,
        match=r"tensor '[\w.]+' ends at byte \d+ but the file has only \d+; was the upload cut",
    ):
        inspect(path)


def test_gguf_cut_inside_metadata_is_refused(tmp_path: Path) -> None:
    path = gguf_file(tmp_path / "tiny.gguf")
    path.write_bytes(path.read_bytes()[:100])

    with pytest.raises(
        InvalidArtifact, match=r"tiny\.gguf: the file ends inside the .*metadata 'general\.name'"
    ):
        inspect(path)


def test_gguf_unsupported_version_is_refused(tmp_path: Path) -> None:
    data = b"GGUF" + struct.pack("<IQQ", 4, 0, 0)

    with pytest.raises(InvalidArtifact, match="GGUF version 4 is not supported"):
        inspect(write(tmp_path / "m.gguf", data))


def test_gguf_big_endian_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = gguf_file(tmp_path / "tiny.gguf", endianess=gguf.GGUFEndian.BIG)

    with pytest.raises(InvalidArtifact, match="is a big-endian GGUF file"):
        inspect(path)


def test_gguf_absurd_tensor_count_is_refused(tmp_path: Path) -> None:
    data = b"GGUF" + struct.pack("<IQQ", 3, 10**12, 0)

    with pytest.raises(InvalidArtifact, match="declares 1000000000000 tensors"):
        inspect(write(tmp_path / "m.gguf", data))


def test_gguf_unknown_value_type_is_refused(tmp_path: Path) -> None:
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k"
    data += struct.pack("<I", 99) + bytes(8)

    with pytest.raises(InvalidArtifact, match="metadata 'k' has unknown value type 99"):
        inspect(write(tmp_path / "m.gguf", data))


def test_gguf_version_1_is_read_with_32_bit_counts(tmp_path: Path) -> None:
    key, value = b"general.architecture", b"llama"
    data = b"GGUF" + struct.pack("<III", 1, 0, 1)
    data += struct.pack("<I", len(key)) + key + struct.pack("<II", 8, len(value)) + value

    report = inspect(write(tmp_path / "old.gguf", data))

    assert report.info == {
        "version": 1,
        "tensor_count": 0,
        "kv_count": 1,
        "parameter_count": 0,
        "architecture": "llama",
    }


def test_gguf_named_file_without_signature_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifact, match=r"m\.gguf: is not a GGUF file"):
        inspect(write(tmp_path / "m.gguf", b"GGML is an older format"))


def test_cutting_any_model_short_raises_nothing_but_invalid_artifact(tmp_path: Path) -> None:
    samples = {
        "model.onnx": onnx_model_bytes(),
        "model.gguf": gguf_file(tmp_path / "sample.gguf").read_bytes(),
        "model.bin": safetensors_bytes({"w": np.ones(3, dtype=np.float32)}),
    }
    path = tmp_path / "upload"
    for filename, data in samples.items():
        for length in range(len(data)):
            write(path, data[:length])
            with contextlib.suppress(InvalidArtifact):
                inspect(path, filename)


def test_ggml_block_table_matches_gguf_package() -> None:
    expected = {int(kind): sizes for kind, sizes in gguf.GGML_QUANT_SIZES.items()}
    assert expected == _GGML_BLOCKS


def test_pickle_stream_is_unsafe_whatever_its_name(tmp_path: Path) -> None:
    data = pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)

    report = inspect(write(tmp_path / "weights.dat", data))

    assert report == FormatReport(
        Format.PICKLE, unsafe=True, info={"container": "pickle", "protocol": 4}
    )


def test_torch_zip_with_data_pkl_is_unsafe(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": 1}, protocol=2))
        archive.writestr("archive/data/0", bytes(16))
        archive.writestr("archive/version", "3\n")

    report = inspect(path, "checkpoint.zip")

    assert report == FormatReport(Format.PICKLE, unsafe=True, info={"container": "torch-zip"})


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".joblib"])
def test_pickle_suffix_is_unsafe_even_when_content_is_unrecognised(
    tmp_path: Path, suffix: str
) -> None:
    report = inspect(write(tmp_path / f"model{suffix}", b"PK\x03\x04 not really a zip"))

    assert report == FormatReport(Format.PICKLE, unsafe=True, info={})


def test_pdf_reports_version_and_page_count(tmp_path: Path) -> None:
    report = inspect(write(tmp_path / "paper.pdf", pdf_bytes(pages=1)))

    assert report.format == Format.PDF
    assert report.unsafe is False
    assert report.info == {"version": "1.3", "page_count": 1, "encrypted": False}


def test_pdf_under_another_name_is_recognised_by_content(tmp_path: Path) -> None:
    report = inspect(write(tmp_path / "paper.bin", pdf_bytes(pages=3)))

    assert report.format == Format.PDF
    assert report.info["page_count"] == 3


def test_pdf_cut_in_half_is_refused(tmp_path: Path) -> None:
    data = pdf_bytes()

    with pytest.raises(InvalidArtifact, match=r"paper\.pdf: has no %%EOF marker .* truncated"):
        inspect(write(tmp_path / "paper.pdf", data[: len(data) // 2]))


def test_pdf_with_broken_body_is_refused(tmp_path: Path) -> None:
    data = b"%PDF-1.7\nthis body has no objects and no cross-reference table\n%%EOF\n"

    with pytest.raises(InvalidArtifact, match=r"paper\.pdf: could not be read as a PDF"):
        inspect(write(tmp_path / "paper.pdf", data))


def test_pdf_named_file_with_other_content_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifact, match=r"paper\.pdf: is not a PDF"):
        inspect(write(tmp_path / "paper.pdf", b"<html><body>Download failed</body></html>"))


def test_npz_lists_its_arrays(tmp_path: Path) -> None:
    path = tmp_path / "features.npz"
    np.savez(path, embeddings=np.ones((2, 3)), labels=np.arange(2))

    report = inspect(path)

    assert report == FormatReport(
        Format.NPZ, unsafe=False, info={"arrays": ["embeddings", "labels"]}
    )


def test_npz_named_zip_with_other_entries_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "features.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.npy", b"")
        archive.writestr("notes.txt", "hello")

    with pytest.raises(InvalidArtifact, match=r"\['notes\.txt'\] are not \.npy arrays"):
        inspect(path)


def test_plain_zip_is_other(tmp_path: Path) -> None:
    path = tmp_path / "code.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.py", "print('hi')\n")

    assert inspect(path) == FormatReport(Format.OTHER, unsafe=False, info={})


def test_parquet_signature_at_both_ends_is_parquet(tmp_path: Path) -> None:
    footer = b"\x15\x00"  # stands in for the thrift file metadata
    data = b"PAR1" + b"\x00" * 32 + footer + struct.pack("<I", len(footer)) + b"PAR1"

    report = inspect(write(tmp_path / "rows.parquet", data))

    assert report == FormatReport(Format.PARQUET, unsafe=False, info={})


def test_parquet_missing_its_end_signature_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifact, match=r"rows\.parquet: does not end with the PAR1"):
        inspect(write(tmp_path / "rows.parquet", b"PAR1" + b"\x00" * 64))


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("scores.csv", Format.CSV),
        ("scores.tsv", Format.CSV),
        ("rows.jsonl", Format.JSONL),
        ("config.json", Format.JSON),
        ("notes.txt", Format.TEXT),
        ("README.MD", Format.TEXT),
    ],
)
def test_text_suffixes_map_to_their_formats(
    tmp_path: Path, filename: str, expected: Format
) -> None:
    path = write(tmp_path / filename, "naïve,ünïcode\n1,2\n".encode())

    assert inspect(path) == FormatReport(expected, unsafe=False, info={})


def test_csv_with_invalid_utf8_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "scores.csv", b"name,score\nJos\xe9,3\n")

    with pytest.raises(
        InvalidArtifact, match=r"scores\.csv: is not UTF-8 text \(byte 0xe9 at offset 14"
    ):
        inspect(path)


def test_character_split_by_the_64_kib_sample_is_not_refused(tmp_path: Path) -> None:
    data = b"a" * (64 * 1024 - 1) + "é".encode() + b"\n"

    assert inspect(write(tmp_path / "notes.txt", data)).format == Format.TEXT


def test_unrecognised_file_is_other(tmp_path: Path) -> None:
    report = inspect(write(tmp_path / "image.png", b"\x89PNG\r\n\x1a\n" + bytes(32)))

    assert report == FormatReport(Format.OTHER, unsafe=False, info={})
