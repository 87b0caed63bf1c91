"""PaddleX inference folders for the tests (tests/fixtures/paddlex_infer, built by tools/paddlex_infer_fixtures.py).

Each folder is PaddleX's export of a parity checkpoint in ../shared/parity, with PaddleX's
own predictions in ``paddlex.json``. Only small parameter files are committed; the others
are rebuilt here from the parity checkpoint (the export map names each tensor; PP-LCNetV2's
branches, fused by Paddle at export, come from ``reparameterized.npz``) and must come out
byte-identical to the file PaddleX wrote (``pdiparams_sha256``): the tests run on PaddleX's
exact bytes.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from viewfinder.io.paddle_params import write_tensor_stream
from viewfinder.models.paddle_program import read_program
from viewfinder.models.paddlex_dir import PARAMS_FILE, export_map, ranked_names
from viewfinder.models.weights import read_pdparams

FIXTURES = Path(__file__).parent / "fixtures" / "paddlex_infer"
PHOTO = "chelsea.png"


def record(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "paddlex.json").read_text())


def _detector_constant(shape: tuple[int, ...]) -> np.ndarray:
    """The constants PicoDet's export traces into the program: anchor centres (cells), strides, 0..reg_max."""
    strides, side = (8, 16, 32, 64), 640
    if shape == (8,):
        return np.arange(8, dtype=np.float32)
    centres, stride_rows = [], []
    for stride in strides:
        cells = side // stride
        y, x = np.meshgrid(np.arange(cells, dtype=np.float32), np.arange(cells, dtype=np.float32), indexing="ij")
        centres.append(np.stack([x.ravel() + 0.5, y.ravel() + 0.5], axis=1))
        stride_rows.append(np.full((cells * cells, 1), stride, dtype=np.float32))
    return np.concatenate(centres if shape[1] == 2 else stride_rows).astype(np.float32)


def rebuild_pdiparams(folder: Path, name: str, shared: Path) -> None:
    """``folder/inference.pdiparams`` from the parity checkpoint, in the order and names of ``folder``'s program."""
    state = read_pdparams(shared / "parity" / name / "model.pdparams")
    scale = record(name).get("weights_scale")
    if scale:  # the generator's WEIGHT_SCALES, same float32 arithmetic
        state = {key: (np.asarray(value) * np.float32(scale["factor"])).astype(np.float32)
                 if scale["contains"] in key else value for key, value in state.items()}
    mapping = export_map(name)
    if record(name).get("reparameterized"):  # PaddleX's fused PP-LCNetV2 branches (see the generator)
        with np.load(FIXTURES / name / record(name)["reparameterized"], allow_pickle=False) as fused:
            state.update({key: fused[key] for key in fused.files})
    ranked_map = ranked_names([n for n, _ in mapping["params"]])
    key_of = {ranked_map[n]: key for n, key in mapping["params"]}
    program = read_program(folder)
    ranked = ranked_names([p.name for p in program.params])
    tensors = []
    for param in program.params:
        key = key_of[ranked[param.name]]
        tensors.append(_detector_constant(param.shape) if key is None else np.asarray(state[key], dtype=np.float32))
    write_tensor_stream(folder / PARAMS_FILE, tensors)


def paddlex_folder(name: str, work: Path, shared: Path) -> Path:
    """The fixture folder of ``name`` with its parameter file (rebuilt and checked when not committed)."""
    source = FIXTURES / name
    if (source / PARAMS_FILE).is_file():
        return source
    folder = work / name
    if not folder.is_dir():
        shutil.copytree(source, folder)
        rebuild_pdiparams(folder, name, shared)
    digest = hashlib.sha256((folder / PARAMS_FILE).read_bytes()).hexdigest()
    expected = record(name)["pdiparams_sha256"]
    assert digest == expected, f"{name}: rebuilt {PARAMS_FILE} differs from PaddleX's ({digest} != {expected})"
    return folder
