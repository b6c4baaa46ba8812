"""Mutation suite: damaged and forged versions of every file format the CLI reads.

Each valid file is mutated field by field (removed, retyped, set to NaN / inf / huge / negative),
truncated and byte-flipped, then handed to the command that reads it. For every mutation the
command must either succeed or refuse with exit 1 or 2 and **one** line on stderr, never a
traceback; the input file is never changed and nothing is written outside the output folder.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sfsc_deploy.models import checkpoint
from tests.cli import TINY_NET
from tests.cli.test_cli import TINY
from tests.cli.test_outputs import snapshot
from tests.conftest import folder_dataset

pytestmark = pytest.mark.slow  # several hundred command runs

REMOVE = object()
# a finished one-epoch run of a tiny model: resuming it loads everything and trains nothing
RUN = [
    *TINY_NET,
    *("--feature-dim", "16", "--widths", "0.5", "--epochs", "1", "--batch-ids", "2", "--batch-k", "2"),
    "--no-plots",
]
VALUES = ["x", None, math.nan, -1, 10**12, [], True]


def mutations(tree, path=()):
    """(path, new value) for every node: removed (dict keys) or replaced by each of VALUES."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield (*path, key), REMOVE
            yield from mutations(value, (*path, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from mutations(value, (*path, i))
    if path:
        for value in VALUES:
            if value != tree or type(value) is not type(tree):
                yield path, value


def mutated(tree, path, value):
    tree = copy.deepcopy(tree)
    target = tree
    for key in path[:-1]:
        target = target[key]
    if value is REMOVE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return tree


class Outcome:
    def __init__(self):
        self.tried, self.refused = 0, 0

    def check(self, code: int, err: str, label: str) -> None:
        self.tried += 1
        assert code in (0, 1, 2), f"{label}: exit {code}\n{err}"
        assert "Traceback" not in err, f"{label}: traceback\n{err}"
        if code:
            self.refused += 1
            if code == 2:
                assert len(err.strip().splitlines()) == 1, f"{label}: not one line\n{err}"


def cli(*argv: str) -> tuple[int, str]:
    """The CLI in-process; stderr captured. An unexpected exception propagates and fails the test."""
    import contextlib
    import io

    from sfsc_deploy.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(buffer):
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, buffer.getvalue()


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, Path]:
    """A tiny checkpoint, its device table, ONNX export and gallery, a finished run, a tiny dataset."""
    folder = tmp_path_factory.mktemp("valid")
    data = folder_dataset(folder / "data", train=(6, 4), query=(4, 2), gallery_per_id=4)
    ck, table = folder / "ck.safetensors", folder / "device.json"
    assert cli("init", *TINY, "--out", str(ck))[0] == 0
    argv = ["--checkpoint", str(ck), "--width", "0.25", "--out", str(folder / "exp"), "--data", str(data)]
    code, err = cli("export", *argv, "--calibration-images", "8", "--parity-images", "4")
    assert code == 0, err
    onnx = folder / "exp" / "resnet18_w0.25_fp32.onnx"
    code, err = cli("extract", "--model", str(onnx), "--data", str(data), "--out", str(folder / "g.npz"))
    assert code == 0, err
    code, err = cli("train", *RUN, "--data", str(data), "--out", str(folder / "run"))
    assert code == 0, err
    code, err = cli(
        "profile",
        "--checkpoint",
        str(ck),
        "--out",
        str(table),
        "--iters",
        "2",
        "--warmup",
        "0",
        "--batches",
        "1",
    )
    assert code == 0, err
    return {"checkpoint": ck, "table": table, "onnx": onnx, "gallery": folder / "g.npz", "data": data,
            "run": folder / "run"}  # fmt: skip


def header_of(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as fh:
        return json.loads(fh.metadata()[checkpoint.METADATA_KEY])


def write_checkpoint(path: Path, tensors: dict, header: dict) -> None:
    save_file(tensors, str(path), metadata={checkpoint.METADATA_KEY: json.dumps(header)})


@pytest.mark.parametrize("forged", [False, True], ids=["damaged", "forged-digest"])
def test_mutated_checkpoint_headers(valid, tmp_path, forged):
    """Damaged: the header digest refuses every change. Forged (digest recomputed, as an attacker
    would): the schema and the bounds must still hold, or the file must work."""
    source = valid["checkpoint"]
    header, tensors = header_of(source), load_file(str(source))
    before, outcome = snapshot(source.parent), Outcome()
    for path, value in mutations(header):
        if path == ("header_sha256",) and forged:
            continue
        if not forged and value not in (REMOVE, "x"):
            continue  # the digest refuses any change alike; removal and one retype per field suffice
        bad = mutated(header, path, value)
        if forged and isinstance(bad, dict):
            bad["header_sha256"] = checkpoint.header_digest(bad)
        ck = tmp_path / "ck.safetensors"
        write_checkpoint(ck, tensors, bad)
        label = f"{'/'.join(map(str, path))} = {'<removed>' if value is REMOVE else repr(value)}"
        code, err = cli("info", str(ck), "--json")
        outcome.check(code, err, f"info {label}")
        if not forged:
            assert code == 2, f"info accepted a damaged header: {label}"
        elif code == 0 and path[0] == "config":  # an accepted model change must also survive slicing
            argv = [
                "slice",
                "--checkpoint",
                str(ck),
                "--width",
                "0.25",
                "--out",
                str(tmp_path / "o"),
                "--force",
            ]
            outcome.check(*cli(*argv), f"slice {label}")
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".sfsc")) <= [
            "ck.safetensors",
            "o",
        ]
    assert snapshot(source.parent) == before
    print(
        f"checkpoint header mutations ({'forged' if forged else 'damaged'}): "
        f"{outcome.tried} runs, {outcome.refused} refused"
    )
    assert outcome.tried > 50


def test_truncated_and_byte_flipped_checkpoints(valid, tmp_path):
    data = valid["checkpoint"].read_bytes()
    outcome = Outcome()
    cuts = [0, 4, 8, 9, 100, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1]
    flips = [8, 20, 60, 200, 400, len(data) // 4, len(data) // 2, len(data) - 50, len(data) - 2]
    variants = [(f"cut at {n}", data[:n]) for n in cuts]
    for at in flips:
        flipped = bytearray(data)
        flipped[at] ^= 0x20
        variants.append((f"byte {at} flipped", bytes(flipped)))
    for label, content in variants:
        ck = tmp_path / "ck.safetensors"
        ck.write_bytes(content)
        code, err = cli("info", str(ck))
        outcome.check(code, err, label)
        assert code == 2, f"{label} was accepted"
    assert outcome.refused == len(variants)


def test_mutated_device_tables(valid, tmp_path):
    table = json.loads(valid["table"].read_text())
    table["entries"] = table["entries"][:1]  # every entry has the same fields: mutating one covers them
    outcome = Outcome()
    for path, value in mutations(table):
        if path[0] == "device" and len(path) > 1 and value is not REMOVE:
            continue  # free text about the machine: its removal is enough
        bad = mutated(table, path, value)
        target = tmp_path / "device.json"
        target.write_text(json.dumps(bad))
        label = f"{'/'.join(map(str, path))} = {'<removed>' if value is REMOVE else repr(value)}"
        code, err = cli("plan", "--table", str(target), "--budget-ms", "20")
        outcome.check(code, err, f"plan {label}")
    for cut in (0, 10, 100):
        target.write_text(valid["table"].read_text()[:cut])
        outcome.check(*cli("plan", "--table", str(target), "--budget-ms", "20"), f"cut at {cut}")
    print(f"device table mutations: {outcome.tried} runs, {outcome.refused} refused")
    assert outcome.tried > 80


def _toml(tiers: list) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float) and math.isnan(v):
            return "nan"
        if isinstance(v, float) and math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    return "".join(
        "[[tier]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in t.items() if v is not None and v != {})
        for t in tiers
    )


def test_mutated_tier_files(valid, tmp_path):
    tiers = [
        {
            "name": "cam",
            "width": 0.25,
            "format": "onnx",
            "precision": "fp32",
            "batch": [1, 1, 4],
            "threads": 1,
            "latency_budget_ms": 5.0,
            "normalize": False,
            "bake_preprocess": False,
        }
    ]
    outcome = Outcome()
    ck = valid["checkpoint"]
    for path, value in mutations(tiers):
        bad = mutated(tiers, path, value)
        if not isinstance(bad[0], dict):
            continue
        target = tmp_path / "tiers.toml"
        target.write_text(_toml(bad))
        label = f"{'/'.join(map(str, path))} = {'<removed>' if value is REMOVE else repr(value)}"
        out = tmp_path / "exp"
        code, err = cli(
            "export",
            "--checkpoint",
            str(ck),
            "--tiers",
            str(target),
            "--out",
            str(out),
            "--force",
            "--calibration-images",
            "8",
            "--parity-images",
            "4",
        )
        outcome.check(code, err, f"export {label}")
    print(f"tier file mutations: {outcome.tried} runs, {outcome.refused} refused")
    assert outcome.tried > 40


def _label(path, value) -> str:
    return f"{'/'.join(map(str, path))} = {'<removed>' if value is REMOVE else repr(value)}"


def _npz_arrays(path: Path) -> dict:
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_mutated_galleries(valid, tmp_path):
    """Every array removed, retyped, reshaped, cut short or poisoned with NaN/inf; every field of the
    description mutated; the file truncated and byte-flipped. ``verify`` reads each."""
    import numpy as np

    arrays = _npz_arrays(valid["gallery"])
    meta = json.loads(str(arrays["meta"]))
    n, d = arrays["features"].shape
    variants = []
    for key, a in arrays.items():
        variants.append((f"{key} removed", {k: v for k, v in arrays.items() if k != key}))
        changes = {
            "as text": np.asarray(a).astype(str),
            "as float": np.zeros(a.shape, np.float64) if a.ndim else np.asarray(0.5),
            "2-d": np.stack([a, a], axis=-1) if a.ndim else np.asarray([[1, 2]]),
            "cut short": a[: max(len(a) - 1, 0)] if a.ndim else a,
            "empty": a[:0] if a.ndim else np.asarray(""),
        }
        for label, value in changes.items():
            if value.dtype != a.dtype or value.shape != a.shape or not np.array_equal(value, a):
                variants.append((f"{key} {label}", {**arrays, key: value}))
    for poison in (np.nan, np.inf, 1e30):
        bad = arrays["features"].copy()
        bad[1, 2] = poison
        variants.append((f"features hold {poison}", {**arrays, "features": bad}))
    variants.append(("all-zero features", {**arrays, "features": np.zeros((n, d), np.float32)}))
    variants.append(("ids beyond int64", {**arrays, "pids": np.full(n, 2**64 - 1, np.uint64)}))
    for path, value in mutations(meta):
        bad = mutated(meta, path, value)
        variants.append((f"meta {_label(path, value)}", {**arrays, "meta": np.asarray(json.dumps(bad))}))
    outcome, target = Outcome(), tmp_path / "g.npz"
    model = valid["onnx"]
    before = snapshot(model.parent)
    for label, content in variants:
        with open(target, "wb") as fh:
            np.savez(fh, **content)
        code, err = cli(
            "verify", "--model", str(model), "--gallery", str(target), "--data", str(valid["data"])
        )
        outcome.check(code, err, label)
        if label.endswith(("removed", "as text", "2-d", "cut short", "empty")) and "meta" not in label:
            assert code == 2, f"{label} was accepted"
        if label in ("features hold nan", "features hold inf", "all-zero features"):
            assert code == 2, f"{label} was accepted"
    data = valid["gallery"].read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        target.write_bytes(data[:cut])
        code, err = cli(
            "verify", "--model", str(model), "--gallery", str(target), "--data", str(valid["data"])
        )
        outcome.check(code, err, f"cut at {cut}")
        assert code == 2
    assert snapshot(model.parent) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz"]
    print(f"gallery mutations: {outcome.tried} runs, {outcome.refused} refused")
    assert outcome.tried > 100


def _onnx_variants(path: Path):
    """(label, model) for every metadata field mutated and for graphs of another shape."""
    import onnx

    from exporters.onnx_export import read_metadata, set_metadata

    original = onnx.load(str(path))
    meta = read_metadata(original)
    values = [REMOVE, "", "x", "nan", "inf", "-1", "0", "8", "1e12", "true", "1,2", "99999x99999"]
    for key in meta:
        for value in values:
            if value == meta[key] or (key in ("producer", "input_format") and value is not REMOVE):
                continue  # free text nothing reads, and the producer tag: removal says all
            model = copy.deepcopy(original)
            new = {k: v for k, v in meta.items() if k != key}
            if value is not REMOVE:
                new[key] = value
            set_metadata(model, new)  # replaces the model's own
            yield f"metadata {_label((key,), value)}", model
    graph = original.graph
    reshaped = [("NHWC input", [1, 64, 32, 3]), ("another size", [1, 3, 128, 64]), ("rank 3", [3, 64, 32])]
    for label, dims in reshaped:
        model = copy.deepcopy(original)
        shape = model.graph.input[0].type.tensor_type.shape
        del shape.dim[:]
        for v in dims:
            shape.dim.add().dim_value = v
        yield label, model
    model = copy.deepcopy(original)
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    yield "double input", model
    model = copy.deepcopy(original)
    out = model.graph.output[0].type.tensor_type.shape
    out.dim[-1].dim_value = 8  # onnxruntime infers the real 32: may work, since the features are right
    yield "declared 8-d output", model
    assert graph.input  # the original is untouched


def test_mutated_onnx_models(valid, tmp_path):
    """A forged or damaged model: metadata fields removed or set to junk, NaN, huge or negative
    values; inputs of another layout, size, rank or type; a lying output shape; cut and flipped
    bytes. ``verify`` against a real gallery must refuse each with one line or work correctly."""
    import onnx

    outcome = Outcome()
    target = tmp_path / "m.onnx"
    gallery, data = valid["gallery"], str(valid["data"])
    before = snapshot(gallery.parent / "exp")
    gallery_bytes = gallery.read_bytes()
    for label, model in _onnx_variants(valid["onnx"]):
        onnx.save(model, str(target))
        code, err = cli("verify", "--model", str(target), "--gallery", str(gallery), "--data", data)
        outcome.check(code, err, label)
        if not label.startswith("metadata") and label != "declared 8-d output":
            assert code == 2, f"{label} was accepted"
    raw = valid["onnx"].read_bytes()
    for at in (0, 10, 100, len(raw) // 2, len(raw) - 10):
        flipped = bytearray(raw)
        flipped[at] ^= 0xFF
        for label, content in ((f"cut at {at}", raw[:at]), (f"byte {at} flipped", bytes(flipped))):
            target.write_bytes(content)
            code, err = cli("verify", "--model", str(target), "--gallery", str(gallery), "--data", data)
            outcome.check(code, err, label)
    assert gallery.read_bytes() == gallery_bytes and snapshot(gallery.parent / "exp") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    print(f"ONNX model mutations: {outcome.tried} runs, {outcome.refused} refused")
    assert outcome.tried > 100


def test_malformed_run_folders(valid, tmp_path):
    """``train --resume`` on a run whose files are missing, cut, replaced by junk, or whose training
    state describes something else: one line each, and the run is left as it was."""
    import shutil

    from safetensors.torch import load_file as load_tensors

    from sfsc_deploy.train.state import METADATA_KEY

    source = valid["run"]
    state = source / "train_state.safetensors"
    with safe_open(str(state), framework="pt") as fh:
        state_meta = json.loads(fh.metadata()[METADATA_KEY])
    state_tensors = load_tensors(str(state))
    variants = []
    for name in ("checkpoint.safetensors", "train_state.safetensors", "train_log.jsonl"):
        data = (source / name).read_bytes()
        variants += [(f"{name} removed", name, None), (f"{name} cut", name, data[: len(data) // 2])]
        variants.append((f"{name} junk", name, b"junk"))
    log = (source / "train_log.jsonl").read_text()
    variants.append(("log: damaged first line", "train_log.jsonl", ("{oops\n" + log).encode()))
    info = state_meta["info"]  # its training options are TrainConfig's, whose schema tests/train checks
    for path, value in [((k,), v) for k in info for v in (REMOVE, *VALUES) if not isinstance(info[k], dict)]:
        bad = {**state_meta, "info": mutated(info, path, value)}
        variants.append(
            (f"state info {_label(path, value)}", "train_state.safetensors", (bad, state_tensors))
        )
    first = next(iter(state_tensors))
    wrong = {**state_tensors, first: state_tensors[first].flatten()[:1].repeat(3)}
    variants.append(("state tensor of another shape", "train_state.safetensors", (state_meta, wrong)))
    # retyped training options
    for key, value in (("lr", "0.1"), ("epochs", 1.5), ("kl_weight", None), ("seed", True)):
        bad = {**state_meta, "info": {**info, "config": {**info["config"], key: value}}}
        variants.append((f"state config {key} = {value!r}", "train_state.safetensors", (bad, state_tensors)))
    outcome = Outcome()
    for label, name, content in variants:
        run_dir = tmp_path / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(source, run_dir)
        if content is None:
            (run_dir / name).unlink()
        elif isinstance(content, tuple):
            meta, tensors = content
            save_file(tensors, str(run_dir / name), metadata={METADATA_KEY: json.dumps(meta)})
        else:
            (run_dir / name).write_bytes(content)
        kept = snapshot(run_dir)
        code, err = cli("train", *RUN, "--data", str(valid["data"]), "--out", str(run_dir), "--resume")
        outcome.check(code, err, label)
        if code:
            assert snapshot(run_dir) == kept, f"{label}: a refused resume changed the run"
    print(f"run folder mutations: {outcome.tried} runs, {outcome.refused} refused")
    assert outcome.refused >= 10
