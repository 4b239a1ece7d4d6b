"""ModelArchitecture and the model-only functions of the original capacity planner
(model_total_params, model_memory_req, find_possible_tp, max_context_len).

Parameter counts come from simcore/ops/linears.py, weight bytes from simcore/memory/,
KV sizes from simcore/ops/kv.py (through KVCacheDetail). GB = 1e9 bytes throughout.
"""

from __future__ import annotations

from simcore.config.hardware import gpu_names
from simcore.config.model import ModelSpec, load_model
from simcore.planner.capacity import build_run, check_weights, find_possible_tp
from simcore.planner.kv_detail import GB, KVCacheDetail, LayerKV, kv_cache_detail, kv_dtype_for, layer_breakdown
from simcore.memory import stage_weight_bytes
from simcore.ops.linears import active_params, total_params


def _spec(model) -> ModelSpec:
    return model.spec if isinstance(model, ModelArchitecture) else load_model(str(model))


def model_total_params(model) -> int:
    """Parameters of the checkpoint's main model (embeddings, layers, final norm, untied head)."""
    return total_params(_spec(model))


def model_memory_req(model, dtype: str = "auto") -> float:
    """Weight bytes of the whole model on one GPU. dtype 'auto' reads quantization_config (fp8; int4 for
    awq/gptq; mxfp4 experts for gpt-oss), else the checkpoint's torch_dtype; embeddings stay 16-bit."""
    spec = _spec(model)
    check_weights(dtype)
    return stage_weight_bytes(build_run(spec.path, gpu_names()[0], weights=dtype), 0)


def max_context_len(model) -> int:
    """max_position_embeddings from the config (0 when the config gives none)."""
    return _spec(model).max_position


class ModelArchitecture:
    """A model from the catalog (name) or any Hugging Face config.json (path), with its KV cache
    and memory figures. kv_dtype: auto (the activation dtype), bf16, fp16 or fp8."""

    def __init__(self, model: str, kv_dtype: str = "auto"):
        self.spec: ModelSpec = load_model(str(model))
        self.model_id = self.spec.name
        self.source = str(model)  # what to hand to other planner functions
        self.kv_dtype = kv_dtype_for(kv_dtype)

    def __repr__(self) -> str:
        return f"ModelArchitecture({self.source!r}, kv_dtype={self.kv_dtype!r})"

    @property
    def attention_type(self) -> str:
        return self.spec.attention_type

    @property
    def num_parameters(self) -> int:
        return total_params(self.spec)

    @property
    def num_parameters_billions(self) -> float:
        return self.num_parameters / 1e9

    @property
    def num_active_parameters_billions(self) -> float:
        return active_params(self.spec) / 1e9

    @property
    def max_context_length(self) -> int:
        return self.spec.max_position

    def possible_tp(self) -> list[int]:
        return find_possible_tp(self.spec)

    def model_memory_gb(self, dtype: str = "auto") -> float:
        """Weights in GB (1e9 bytes) at `dtype` ('auto': as the checkpoint is quantized)."""
        return model_memory_req(self, dtype) / GB

    def get_kv_cache_detail(self, context_length: int = 1, batch_size: int = 1) -> KVCacheDetail:
        return kv_cache_detail(self.spec, context_length, batch_size, self.kv_dtype)

    _get_kv_cache_detail = get_kv_cache_detail  # the original planner's private name

    def kv_cache_memory_gb(self, context_length: int = 1, batch_size: int = 1) -> float:
        """KV cache of `batch_size` requests of `context_length` tokens, in GB (1e9 bytes), tp 1."""
        return self.get_kv_cache_detail(context_length, batch_size).kv_cache_size_gb

    def kv_cache_per_layer(self, context_length: int = 1) -> list[LayerKV]:
        self.get_kv_cache_detail(context_length)  # validates the context
        return layer_breakdown(self.spec, context_length, self.kv_dtype)
