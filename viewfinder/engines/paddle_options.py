"""PaddleX's runtime options (``use_hpip`` / ``enable_hpi``, ``hpi_config``, ``pp_option``) in our terms.

PaddleX configures inference with a high-performance-inference switch, its ``hpi_config``
dict and a ``PaddlePredictorOption`` (``device``, ``run_mode``, ``cpu_threads``, TensorRT
settings). :func:`resolve_runtime` turns them into the four settings our engines take
(device, engine, CPU threads, fp16) or raises :class:`ConfigError` saying why a value has
no counterpart here: a PaddleX option is honoured or refused, never dropped.

Mapping (docs/compatibility.md has the table):

* ``use_hpip`` / ``enable_hpi`` -> ONNX Runtime (``hpi_config.backend`` may pick another engine);
* ``run_mode`` ``paddle`` / ``paddle_fp32`` -> torch; ``paddle_fp16`` -> torch with fp16 on CUDA;
  ``mkldnn`` -> our default CPU engine (ONNX Runtime); TensorRT and bf16 modes are refused;
* ``cpu_threads`` -> engine threads; ``device`` / ``device_type`` + ``device_id`` -> device.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .select import normalize_engine

log = logging.getLogger(__name__)

#: run_mode -> engine; None: our default engine ("auto": ONNX Runtime on CPU)
_RUN_MODE_ENGINES: dict[str, str | None] = {
    "paddle": "torch", "paddle_fp32": "torch", "paddle_fp16": "torch", "mkldnn": None,
}
_RUN_MODE_REFUSALS = {
    "trt_fp32": "viewfinder has no TensorRT engine; on a GPU use run_mode 'paddle' (torch) or 'paddle_fp16'",
    "trt_fp16": "viewfinder has no TensorRT engine; use run_mode 'paddle_fp16' (torch with fp16 autocast on CUDA)",
    "trt_int8": "viewfinder has no TensorRT engine and no int8 inference; use run_mode 'paddle' or 'paddle_fp16'",
    "mkldnn_bf16": "viewfinder runs bf16 on the CPU through precision='bf16' (OpenVINO, checked against fp32; "
                   "--precision bf16, or precision: bf16 in the YAML), with run_mode 'mkldnn' or none",
}
#: hpi_config.backend -> engine
_HPI_BACKENDS = {"onnxruntime": "onnxruntime", "paddle": "torch"}
_PP_OPTION_KEYS = ("device", "device_type", "device_id", "run_mode", "cpu_threads")
#: tuning knobs of Paddle's own executors, with nothing to tune here (logged, not applied)
_PP_OPTION_NO_EFFECT = ("mkldnn_cache_capacity", "enable_new_ir", "enable_cinn", "delete_pass", "model_name")
#: PaddleX 3.0-beta's ``hpi_params``: the licence of its closed-source plugin, which nothing here needs
_HPI_LICENCE_KEYS = ("serial_number", "update_license")


@dataclass(frozen=True)
class RuntimeOptions:
    """What a model runs with; None: the default (device: GPU 0 if available; engine: "auto")."""

    device: str | None = None
    engine: str | None = None
    cpu_threads: int | None = None
    fp16: bool = False
    use_hpip: bool = False


def hpip_switch(use_hpip: Any, enable_hpi: Any, where: str) -> bool | None:
    """High-performance inference on/off from PaddleX's two spellings of the switch (None: neither given)."""
    if use_hpip is not None and enable_hpi is not None and bool(use_hpip) != bool(enable_hpi):
        raise ConfigError(f"{where}: use_hpip={use_hpip} and enable_hpi={enable_hpi} disagree "
                          "(they are the same switch)")
    for name, value in (("use_hpip", use_hpip), ("enable_hpi", enable_hpi)):
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
    return use_hpip if use_hpip is not None else enable_hpi


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _device_from(device: Any, device_type: Any, device_id: Any, where: str) -> str | None:
    """PaddleX spells a device as "gpu:0" or as device_type + device_id."""
    if device_type is None:
        return None if device is None else str(device)
    text = str(device_type) if device_id is None else f"{device_type}:{device_id}"
    if device is not None and str(device) != text:
        raise ConfigError(f"{where}: device {device!r} and device_type/device_id {text!r} disagree")
    return text


def _pp_option_fields(pp_option: Any) -> dict[str, Any]:
    """A PaddlePredictorOption-like object or dict as a dict of the fields we read."""
    if isinstance(pp_option, Mapping):
        fields = dict(pp_option)
        unknown = sorted(str(k) for k in fields if k not in _PP_OPTION_KEYS and k not in _PP_OPTION_NO_EFFECT
                         and not str(k).startswith("trt_"))
        if unknown:
            raise ConfigError(f"pp_option: unknown key(s) {unknown}; viewfinder reads "
                              f"{', '.join(_PP_OPTION_KEYS)}")
        tensorrt = sorted(k for k, v in fields.items() if str(k).startswith("trt_") and v not in (None, False, {}))
        if tensorrt:
            raise ConfigError(f"pp_option: {', '.join(tensorrt)} configure TensorRT, which viewfinder does not have")
        for key in _PP_OPTION_NO_EFFECT:
            if fields.get(key) is not None:
                log.warning("pp_option.%s tunes Paddle's executor and has no effect in viewfinder", key)
        return {k: fields.get(k) for k in _PP_OPTION_KEYS}
    # An object (PaddleX's PaddlePredictorOption or a look-alike): its documented attributes.
    return {k: getattr(pp_option, k, None) for k in _PP_OPTION_KEYS}


def _from_pp_option(pp_option: Any) -> tuple[str | None, str | None, int | None, bool, bool]:
    """(device, engine, cpu_threads, fp16, engine_given) asked for by ``pp_option``."""
    fields = _pp_option_fields(pp_option)
    device = _device_from(fields["device"], fields["device_type"], fields["device_id"], "pp_option")
    threads = None if fields["cpu_threads"] is None else _positive_int(fields["cpu_threads"], "pp_option.cpu_threads")
    mode = fields["run_mode"]
    if mode is None:
        return device, None, threads, False, False
    mode = str(mode).strip().lower()
    if mode in _RUN_MODE_REFUSALS:
        raise ConfigError(f"pp_option.run_mode {mode!r}: {_RUN_MODE_REFUSALS[mode]}")
    if mode not in _RUN_MODE_ENGINES:
        known = ", ".join([*_RUN_MODE_ENGINES, *_RUN_MODE_REFUSALS])
        raise ConfigError(f"pp_option.run_mode {mode!r} is not a PaddleX run mode ({known})")
    if mode == "mkldnn" and device is not None and not device.startswith("cpu"):
        raise ConfigError(f"pp_option.run_mode 'mkldnn' is PaddleX's CPU mode, not for device {device!r}; "
                          "on a GPU use 'paddle' or 'paddle_fp16'")
    return device, _RUN_MODE_ENGINES[mode], threads, mode == "paddle_fp16", True


def _from_hpi_config(hpi_config: Any) -> tuple[str | None, str, int | None]:
    """(device, engine, cpu_threads) asked for by PaddleX's ``hpi_config`` (or 3.0-beta's ``hpi_params``)."""
    if not isinstance(hpi_config, Mapping):
        raise ConfigError(f"hpi_config must be a mapping, got {type(hpi_config).__name__}")
    config = dict(hpi_config)
    for key in _HPI_LICENCE_KEYS:
        if config.pop(key, None) is not None:
            log.warning("hpi_config.%s is the licence of PaddleX's plugin; viewfinder needs none", key)
    known = ("backend", "backend_config", "auto_config", "device_type", "device_id")
    unknown = sorted(str(k) for k in config if k not in known)
    if unknown:
        raise ConfigError(f"hpi_config: unknown key(s) {unknown}; viewfinder reads {', '.join(known)}")
    backend = config.get("backend")
    if backend is None:
        if config.get("auto_config") is False:
            raise ConfigError("hpi_config: auto_config is false, so a backend is needed "
                              f"({', '.join(_HPI_BACKENDS)})")
        engine = "onnxruntime"
    elif str(backend).lower() in _HPI_BACKENDS:
        engine = _HPI_BACKENDS[str(backend).lower()]
    else:
        raise ConfigError(f"hpi_config.backend {backend!r} is not available in viewfinder; it runs "
                          f"{', '.join(_HPI_BACKENDS)} (onnxruntime: ONNX Runtime, paddle: torch)")
    threads = None
    backend_config = config.get("backend_config") or {}
    if not isinstance(backend_config, Mapping):
        raise ConfigError("hpi_config.backend_config must be a mapping")
    for key, value in backend_config.items():
        if key == "cpu_num_threads" and engine == "onnxruntime":
            threads = _positive_int(value, "hpi_config.backend_config.cpu_num_threads")
        else:
            raise ConfigError(f"hpi_config.backend_config.{key} has no counterpart in viewfinder "
                              "(only cpu_num_threads, for the onnxruntime backend)")
    device = _device_from(None, config.get("device_type"), config.get("device_id"), "hpi_config")
    return device, engine, threads


def _require_cuda(device: str | None) -> None:
    """fp16 autocast only runs on CUDA: refuse rather than run float32 unannounced."""
    import torch

    on_cpu = str(device).startswith("cpu") if device is not None else not torch.cuda.is_available()
    if on_cpu:
        raise ConfigError(f"pp_option.run_mode 'paddle_fp16' needs a CUDA device (device: {device or 'cpu'}); "
                          "use run_mode 'paddle' or 'mkldnn' on the CPU")


def _pick(name: str, given: Any, asked: Any, source: str) -> Any:
    """``given`` (an explicit argument) wins over what ``source`` asks for; a clash is an error."""
    if given is not None and asked is not None and given != asked:
        raise ConfigError(f"{name} {given!r} and {source} (which asks for {asked!r}) disagree; give one")
    return given if given is not None else asked


def _prefer(name: str, given: Any, asked: Any, source: str) -> Any:
    """``given`` wins over ``source``'s value (e.g. the service's thread cap over a YAML's), said in the log."""
    if given is not None and asked is not None and given != asked:
        log.warning("%s %r is used; %s asks for %r", name, given, source, asked)
    return given if given is not None else asked


def resolve_runtime(*, device: str | None = None, engine: str | None = None, cpu_threads: int | None = None,
                    fp16: bool = False, use_hpip: bool | None = None, enable_hpi: bool | None = None,
                    pp_option: Any = None, hpi_config: Any = None) -> RuntimeOptions:
    """Our runtime settings from ours and PaddleX's; raises :class:`ConfigError` for what has no counterpart.

    ``device`` and ``cpu_threads`` win over ``pp_option``'s and ``hpi_config``'s (PaddleX's
    precedence; a difference is logged); two different engines asked for at once are an error.
    """
    hpip = bool(hpip_switch(use_hpip, enable_hpi, "arguments"))
    if hpi_config is not None and not hpip:
        raise ConfigError("hpi_config only applies with high-performance inference: set use_hpip "
                          "(or enable_hpi) to true, or drop hpi_config")
    if cpu_threads is not None:
        cpu_threads = _positive_int(cpu_threads, "cpu_threads")
    asked_engine = None
    if hpip:
        hpi_device, asked_engine, hpi_threads = _from_hpi_config(hpi_config) if hpi_config is not None \
            else (None, "onnxruntime", None)
        device = device if device is not None else hpi_device
        cpu_threads = _prefer("cpu_threads", cpu_threads, hpi_threads, "hpi_config")
    if pp_option is not None:
        pp_device, pp_engine, pp_threads, pp_fp16, engine_given = _from_pp_option(pp_option)
        if device is not None and pp_device is not None and device != pp_device:
            log.info("device %r given; pp_option's device %r is not used", device, pp_device)
        device = device if device is not None else pp_device
        cpu_threads = _prefer("cpu_threads", cpu_threads, pp_threads, "pp_option.cpu_threads")
        if engine_given:
            if hpip and pp_engine not in (None, asked_engine):
                raise ConfigError(f"pp_option.run_mode asks for the {pp_engine or 'default'} engine but "
                                  f"high-performance inference runs {asked_engine}; give one")
            asked_engine = pp_engine if not hpip else asked_engine
            if pp_fp16:
                _require_cuda(device)
                fp16 = True
    if engine is not None:
        engine = normalize_engine(engine)  # "onnx" and "onnxruntime" are one engine
    engine = _pick("engine", engine, asked_engine, "use_hpip/hpi_config/pp_option")
    return RuntimeOptions(device=device, engine=engine, cpu_threads=cpu_threads, fp16=bool(fp16), use_hpip=hpip)
