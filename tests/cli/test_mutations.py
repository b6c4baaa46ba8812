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
from tests.cli.test_cli import TINY
from tests.cli.test_outputs import snapshot

pytestmark = pytest.mark.slow  # several hundred command runs

REMOVE = object()
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
    """A tiny checkpoint, the device table profiled from it, and a tier file."""
    folder = tmp_path_factory.mktemp("valid")
    ck, table = folder / "ck.safetensors", folder / "device.json"
    assert cli("init", *TINY, "--out", str(ck))[0] == 0
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
    return {"checkpoint": ck, "table": table}


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
