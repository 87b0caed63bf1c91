#!/usr/bin/env python3
"""Check every parity fixture against our networks: PaddleX weights -> our converter -> same outputs.

    python tools/parity/sweep.py [--fixtures tests/fixtures/parity] [--markdown docs/parity_table.md] [NAME ...]

Each fixture (made by ``make_fixtures.py`` in the PaddleX environment) holds a network's
entry list, seed, calibrated BatchNorm statistics and Paddle's outputs. This rebuilds
Paddle's state dict, writes it as a ``.pdparams`` file and loads it the way a user would
(``create_model(name, weights=FILE)``: the spec's converter, strict key check), runs the
fixture's input through the network alone (``predictor.raw``) and reports the largest
difference relative to the largest output, which must be <= 1e-4. Two kinds of fixture
carry a float64 reference, for networks whose float32 rounding alone exceeds the tolerance on
random weights: one whose reference ran in float64 (``meta["dtype"]``) is compared with our
network run in float64; one with an extra float64 output file (``make_fixtures.py --float64``)
is judged float64 against float64, the float32 comparison printed beside it.
"""
from __future__ import annotations

import argparse
import gc
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seeded import load_fixture  # noqa: E402

TOLERANCE = 1e-4
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FIXTURES = ROOT / "tests" / "fixtures" / "parity"
#: Paddle's float64 outputs, stored for ill-conditioned networks (make_fixtures.py --float64)
FLOAT64_OUTPUTS = "outputs_float64.npz"
#: which Paddle output our network's raw output corresponds to, where there are several
COMPARED_OUTPUT = ("features", "output")


def compared_output(outputs: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
    for key in COMPARED_OUTPUT:
        if key in outputs:
            return key, outputs[key]
    raise KeyError(f"no output among {sorted(outputs)} to compare")


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    ours = np.asarray(ours, dtype=np.float64).reshape(ref.shape)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def run_float64(predictor, x: np.ndarray) -> np.ndarray:
    """The predictor's loaded torch network, run in float64 on ``x``."""
    import torch

    module = predictor.engine.module.double()
    with torch.inference_mode():
        return module(torch.from_numpy(x).double()).numpy()


def check(folder: Path) -> dict:
    """Load one fixture into our network; ``{name, family, params, error, source}``."""
    from viewfinder import create_model
    from viewfinder.models import get_spec

    meta, state, x, outputs = load_fixture(folder)
    name = meta["name"]
    _, ref = compared_output(outputs)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "model.pdparams"
        with weights.open("wb") as handle:
            pickle.dump(state, handle, protocol=4)
        del state
        predictor = create_model(name, weights=weights, device="cpu", engine="torch")
        ours = predictor.raw(x) if meta.get("dtype", "float32") == "float32" else run_float64(predictor, x)
    spec = get_spec(name)
    sources = ", ".join(s.kind if s.kind != "url" else f"{s.format} url" for s in spec.weight_sources) or "none"
    row = {"name": name, "arch": spec.arch, "params": spec.param_count, "error": relative_error(ours, ref),
           "sources": sources, "compared": "float64 reference" if meta.get("dtype", "float32") != "float32"
           else "float32"}
    if (folder / FLOAT64_OUTPUTS).is_file():
        # an ill-conditioned network (make_fixtures.add_float64_outputs): judge float64 against float64
        with np.load(folder / FLOAT64_OUTPUTS) as saved:
            _, ref64 = compared_output({key: saved[key] for key in saved.files})
        module = predictor.engine.module.double()
        with torch.inference_mode():
            ours64 = module(torch.from_numpy(x.astype(np.float64)))
        row["error_float32"] = row["error"]
        row["error"] = relative_error(ours64.numpy(), ref64)
    return row


def compared_in(row: dict) -> str:
    """The precision the parity error was measured in (the Markdown table's column)."""
    if "error_float32" in row:
        return f"float64 (float32: {row['error_float32']:.1e})"
    return row.get("compared", "float32")


def float32_note(row: dict) -> str:
    """Where the float64 comparison decided: the float32 one beside it."""
    if "error_float32" not in row:
        return ""
    return f"  float64 vs float64; float32 vs Paddle float32: {row['error_float32']:.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="fixture names (default: all)")
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--markdown", type=Path, help="write the table here as Markdown")
    args = parser.parse_args()
    folders = [args.fixtures / n for n in args.names] if args.names else sorted(
        p for p in args.fixtures.iterdir() if (p / "meta.json").is_file())
    rows, failures = [], 0
    print(f"{'model':45s} {'params':>12s} {'rel. error':>11s}  result  weight sources")
    for folder in folders:
        started = time.perf_counter()
        try:
            row = check(folder)
        except Exception as exc:  # one failing name must not hide the others
            row = {"name": folder.name, "arch": "", "params": None, "error": float("nan"),
                   "sources": "", "failure": f"{type(exc).__name__}: {str(exc)[:200]}"}
        gc.collect()
        ok = row["error"] <= TOLERANCE
        failures += not ok
        row["result"] = "ok" if ok else "FAIL"
        rows.append(row)
        params = f"{row['params']:,}" if row["params"] else "?"
        print(f"{row['name']:45s} {params:>12s} {row['error']:11.2e}  {row['result']:6s}  {row['sources']}"
              f"  ({time.perf_counter() - started:.1f} s){'  ' + row['failure'] if 'failure' in row else ''}"
              f"{float32_note(row)}",
              flush=True)
    print(f"{len(rows) - failures}/{len(rows)} within {TOLERANCE:g}")
    if args.markdown:
        lines = ["| model | architecture | parameters | parity error | compared in | weight sources |",
                 "|---|---|---|---|---|---|"]
        lines += [f"| {r['name']} | {r['arch']} | {r['params'] or '?':,} | {r['error']:.1e} "
                  f"{'' if r['result'] == 'ok' else '**FAIL**'} | {compared_in(r)} | {r['sources']} |"
                  for r in rows]
        args.markdown.write_text("\n".join(lines) + "\n")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
